"""``broom whatif``: what Broom and its SCP would have done with past launches.

An offline simulation over CloudTrail history, with the Lambda's own decision code:

- ``sources``: CloudTrail log files (files, folders, ``s3://`` prefixes) and
  ``aws cloudtrail lookup-events`` output, read one file at a time;
- ``stream``: the records Broom needs, put back in time order within a bounded window,
  and the launches waiting for their grace period (bounded pending state);
- ``evaluate``: each launch judged by the policy's own elements (``allowed-codes``,
  ``safe-terminate`` through ``c7n_broom.decisions``) and by the SCP ``broom scp``
  prints for the same policy;
- ``output``: the summary, the per-launch table, ``--json`` and suggested exemptions;
- ``athena``: the same record selection as an Amazon Athena query over the standard
  CloudTrail table.
"""
