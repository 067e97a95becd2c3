"""actions.fit: the largest listing of a digest that keeps it under SNS's limit, found
in a few renders (pure; a fake message stands in for the rendered digest)."""
from hypothesis import given, settings
from hypothesis import strategies as st

from c7n_broom import actions, formats


class Rendered:
    def __init__(self, listed, size):
        self.listed, self._size = listed, size

    def size(self, https_chatbot=False):
        return self._size


def binary_search(sizes, count):
    """What fit returned before: the plain binary search over every count."""
    low, high = 0, min(count, formats.BUDGET // 200)
    while low < high:
        middle = (low + high + 1) // 2
        if sizes(middle) <= formats.BUDGET:
            low = middle
        else:
            high = middle - 1
    return low


@settings(max_examples=200, deadline=None)
@given(head=st.integers(0, 300_000), rows=st.lists(st.integers(0, 3000), min_size=1,
                                                   max_size=40),
       count=st.integers(0, 5000))
def test_fit_finds_what_a_binary_search_finds(head, rows, count):
    """Sizes grow with each listed instance (rows of varied lengths, cycled)."""
    def sizes(listed):
        return head + sum(rows[n % len(rows)] + 200 for n in range(listed))

    renders = []

    def build(listed):
        renders.append(listed)
        return Rendered(listed, sizes(listed))

    assert actions.fit(build, count).listed == binary_search(sizes, count)


def test_an_even_digest_is_fitted_in_a_few_renders():
    renders = []

    def build(listed):
        renders.append(listed)
        return Rendered(listed, 2_000 + 350 * listed)

    found = actions.fit(build, 5000)

    assert found.listed == (formats.BUDGET - 2_000) // 350
    assert len(renders) <= 5  # a binary search renders about ten times
