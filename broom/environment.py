"""The user's AWS configuration, as the ``broom`` commands meet it.

Commands that make no AWS call (``demo``, ``scp``, ``permissions``, ``preflight``,
``whatif`` on local files) must work whatever the AWS configuration says, yet c7n
and moto create boto3 sessions while they load (c7n's ``fake_session`` for resource
schemas, moto's backends), and a session whose ``AWS_PROFILE`` names no profile
raises ``ProfileNotFound``. Those commands drop such a profile for their own process;
the commands that call AWS say in one line which profile is missing.
"""
import os

PROFILE_VARS = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE")


def missing_profile():
    """``(variable, profile)`` when the environment names a profile that no AWS
    config or credentials file holds, else None. Reads the files only when a profile
    variable is set."""
    named = [(name, os.environ[name]) for name in PROFILE_VARS if os.environ.get(name)]
    if not named:
        return None
    import botocore.session
    from botocore.exceptions import ProfileNotFound

    try:
        botocore.session.Session().get_scoped_config()
    except ProfileNotFound:
        return named[0]
    return None


def ignore_missing_profile():
    """For a command that makes no AWS call: forget a profile variable that names no
    profile (this process only), so that loading c7n or moto cannot fail on it."""
    if missing_profile():
        for name in PROFILE_VARS:
            os.environ.pop(name, None)


def profile_message(error):
    """One line for a ``ProfileNotFound``: the missing profile and what to do."""
    found = missing_profile()
    if not found:
        return "%s: check AWS_PROFILE and the AWS config files" % error
    return ("%s=%s names no profile in the AWS config or credentials files "
            "(~/.aws/config, ~/.aws/credentials): set it to one of them, or unset it to "
            "use the default credentials" % found)
