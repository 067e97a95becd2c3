"""The ``broom`` command: what the stock Custodian commands lack (demo, replay, scp).

Only :mod:`c7n_broom`, the plugin, ships to Lambda; this package holds the command and
its local tooling (:mod:`broom.local`: moto's server as a local AWS, the stock CLIs as
subprocesses, the Lambda archive runner). Importing it imports neither the plugin nor
c7n, so ``broom --help`` and ``broom --version`` need no AWS configuration.
"""
