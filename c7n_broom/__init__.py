"""Broom: a Cloud Custodian plugin that keeps EC2 instances tagged with an allowed Code.

Importing this package registers the ``allowed-codes`` filter and the
``creator-report`` action on ``aws.ec2``.
"""
from c7n_broom.entry import initialize_broom

__version__ = "0.2.0"

initialize_broom()
