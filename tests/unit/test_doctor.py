"""Whose credentials `inv doctor` names, without a network call."""

from __future__ import annotations

import types

from google.auth.credentials import AnonymousCredentials
from google.oauth2.credentials import Credentials as UserCredentials

from provision.gce.clients import account_of


def test_user_credentials_say_how_they_were_made_and_whose_they_are():
    assert account_of(UserCredentials(token=None, account="ada@example.com")) == (
        "user credentials of ada@example.com (gcloud auth application-default login)")
    assert account_of(UserCredentials(token=None)) == (
        "user credentials (gcloud auth application-default login)")


def test_service_accounts_are_named_by_email():
    key_file_credentials = types.SimpleNamespace(
        service_account_email="farm@my-project.iam.gserviceaccount.com")
    assert account_of(key_file_credentials) == (
        "service account farm@my-project.iam.gserviceaccount.com")
    on_a_vm = types.SimpleNamespace(service_account_email="default")
    assert account_of(on_a_vm) == "the default service account of this Google Cloud VM"


def test_the_fake_uses_no_account():
    assert account_of(AnonymousCredentials()) == (
        "anonymous credentials (no Google account is used)")
