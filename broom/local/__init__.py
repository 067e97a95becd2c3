"""Local AWS tooling for ``broom demo`` and the end-to-end tests.

- :mod:`broom.local.aws`: moto's standalone server on a loopback port, and the resources
  Broom needs there (execution role, report topic inbox, state table);
- :mod:`broom.local.deploy`: deploy with the stock ``custodian`` command, run the
  published archive;
- :mod:`broom.local.lambda_runner`: run a Lambda archive the way AWS Lambda runs it.
"""
