"""The check behind the end-to-end tests' guard (tests/e2e/conftest.py): what differs
between an installed copy of Broom and the working tree."""
import shutil

import support


def install(site):
    """What ``pip install .`` puts in site-packages, copied from the working tree."""
    for name, path in support.working_tree_files().items():
        (site / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, site / name)
    return site


def test_an_exact_copy_is_current(tmp_path):
    site = install(tmp_path)
    (site / "c7n_broom" / "__pycache__").mkdir(exist_ok=True)
    (site / "c7n_broom" / "__pycache__" / "stale.cpython-311.pyc").write_bytes(b"")
    assert support.stale_files(site) == []


def test_each_difference_is_named(tmp_path):
    site = install(tmp_path)
    with open(site / "c7n_broom" / "filters.py", "a") as changed:
        changed.write("# edited after install\n")
    (site / "broom" / "policies" / "ec2-tags.yml").unlink()
    (site / "c7n_broom" / "removed_since.py").write_text("")
    (site / "c7n_broom.pth").unlink()
    assert support.stale_files(site) == [
        "c7n_broom/filters.py (differs)",
        "broom/policies/ec2-tags.yml (not installed)",
        "c7n_broom.pth (not installed)",
        "c7n_broom/removed_since.py (not in the working tree)"]


def test_the_working_tree_files_are_what_the_install_ships():
    files = support.working_tree_files()
    assert "c7n_broom/__init__.py" in files and "broom/local/aws.py" in files
    assert "broom/policies/ec2-tags.yml" in files
    assert {"_c7n_broom_autoload.py", "c7n_broom.pth"} <= set(files)
    assert not [name for name in files if "__pycache__" in name]
