#!/usr/bin/env python3
"""Reads an SSO profile's cached sign-in with botocore's own code and prints what it found as JSON.

    botocore_sso_cache_check.py PROFILE

HOME must hold the .aws/config and .aws/sso/cache/ to read. For a profile with
`sso_session`, botocore's token provider (botocore.tokens.SSOTokenProvider, which the AWS CLI
and boto3 use for the sso-session form) loads the token; for the legacy form, its token
loader (botocore.utils.SSOTokenLoader, which the legacy SSO credential provider uses) reads
the file named after the start URL. Either raises when the file is missing, misnamed or
lacks a field it needs, and the script then exits 1 with the error.

The sso_login suite (tests/e2e/sso_login.rs) runs it with the interpreter of the virtualenv
scripts/test makes for redshift_connector (REDSHIFT_CONNECTOR_PYTHON), which has botocore.
No network call is made: a token more than 15 minutes from expiry is used as it is.
"""

from __future__ import annotations

import json
import os
import sys

import botocore.session
import dateutil.parser
from botocore.tokens import SSOTokenProvider
from botocore.utils import JSONFileCache, SSOTokenLoader


def main() -> None:
    profile = sys.argv[1]
    session = botocore.session.Session(profile=profile)
    config = session.full_config["profiles"][profile]
    if "sso_session" in config:
        frozen = SSOTokenProvider(session, profile_name=profile).load_token().get_frozen_token()
        token, expiration = frozen.token, frozen.expiration
        form = "sso-session"
    else:
        cache = JSONFileCache(os.path.expanduser(os.path.join("~", ".aws", "sso", "cache")))
        cached = SSOTokenLoader(cache=cache)(config["sso_start_url"])
        token, expiration = cached["accessToken"], dateutil.parser.parse(cached["expiresAt"])
        form = "legacy"
    print(
        json.dumps(
            {
                "form": form,
                "accessToken": token,
                "expiresAt": int(expiration.timestamp()),
                "botocore": botocore.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
