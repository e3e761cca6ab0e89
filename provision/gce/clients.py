"""Every Compute Engine client archfarm uses, built in one place with one set of options."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import CredentialsError, UserError
from ..loopback import is_loopback

ENDPOINT_ENV = "ARCHFARM_GCE_ENDPOINT"
ADC_FILE = Path("~/.config/gcloud/application_default_credentials.json")


def resolve_endpoint(inventory_endpoint: str | None) -> str | None:
    """`ARCHFARM_GCE_ENDPOINT` wins over the inventory; None means Google's own endpoint."""
    endpoint = os.environ.get(ENDPOINT_ENV) or inventory_endpoint
    if not endpoint:
        return None
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UserError(f"api_endpoint {endpoint!r} is not a URL. Fix: use a URL such as"
                        " http://127.0.0.1:8089 (the fake) or leave it unset for Compute Engine.")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise UserError(f"api_endpoint {endpoint!r} is plain http to a non-loopback host."
                        " Fix: plain http is only for a fake on 127.0.0.0/8; use https.")
    return endpoint


def _credentials(endpoint: str | None):
    if is_fake(endpoint):
        from google.auth.credentials import AnonymousCredentials

        return AnonymousCredentials()
    # Only look for credentials that exist as files: google.auth.default() would otherwise
    # probe the GCE metadata server, which is nowhere to be found off Google Cloud.
    explicit = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    if not explicit and not ADC_FILE.expanduser().exists():
        raise CredentialsError(
            "No Google Cloud credentials found (no GOOGLE_APPLICATION_CREDENTIALS and no"
            f" {ADC_FILE}). Fix: run `gcloud auth application-default login`, or set"
            " GOOGLE_APPLICATION_CREDENTIALS to a service account key file.")
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    try:
        credentials, _ = google.auth.default(
            scopes=["https://www.googleapis.com/auth/compute"])
    except DefaultCredentialsError as e:
        raise CredentialsError(f"Google Cloud credentials are unusable: {e}. Fix: run"
                               " `gcloud auth application-default login`.") from None
    return credentials


def is_fake(endpoint: str | None) -> bool:
    """A plain-http endpoint is the fake or the lab (resolve_endpoint allows it on loopback
    only); anonymous credentials are used there."""
    return bool(endpoint) and urlsplit(endpoint or "").scheme == "http"


def account_of(credentials) -> str:
    """Whose credentials these are, in words, without a network call."""
    from google.auth.credentials import AnonymousCredentials

    if isinstance(credentials, AnonymousCredentials):
        return "anonymous credentials (no Google account is used)"
    email = getattr(credentials, "service_account_email", None)
    if email and email != "default":
        return f"service account {email}"
    if email == "default":  # metadata-server credentials on a Google Cloud VM
        return "the default service account of this Google Cloud VM"
    from google.oauth2.credentials import Credentials as UserCredentials

    if isinstance(credentials, UserCredentials):
        who = f" of {credentials.account}" if getattr(credentials, "account", "") else ""
        return f"user credentials{who} (gcloud auth application-default login)"
    return f"{type(credentials).__module__}.{type(credentials).__name__} credentials"


@dataclass
class Clients:
    """Lazily built compute_v1 clients sharing credentials and endpoint."""

    endpoint: str | None

    @cached_property
    def credentials(self):
        """Application Default Credentials (anonymous for the fake); CredentialsError if none."""
        return _credentials(self.endpoint)

    @cached_property
    def _kwargs(self) -> dict:
        kwargs = {"credentials": self.credentials, "transport": "rest"}
        if self.endpoint:
            kwargs["client_options"] = {"api_endpoint": self.endpoint}
        return kwargs

    def _make(self, name: str):
        from google.cloud import compute_v1

        return getattr(compute_v1, name)(**self._kwargs)

    @cached_property
    def instances(self):
        return self._make("InstancesClient")

    @cached_property
    def zone_operations(self):
        return self._make("ZoneOperationsClient")

    @cached_property
    def global_operations(self):
        return self._make("GlobalOperationsClient")

    @cached_property
    def machine_types(self):
        return self._make("MachineTypesClient")

    @cached_property
    def firewalls(self):
        return self._make("FirewallsClient")

    @cached_property
    def images(self):
        return self._make("ImagesClient")

    @cached_property
    def regions(self):
        return self._make("RegionsClient")

    @cached_property
    def projects(self):
        return self._make("ProjectsClient")

    def check_credentials(self) -> None:
        """Fail early (exit 2) on missing credentials, before any plan is shown."""
        self._kwargs  # noqa: B018 (building them is the check)


def lazy_clients(inventory_endpoint: str | None) -> Callable[[], Clients]:
    """Clients built (credentials checked, the library imported) only when first needed:
    a no-op configure or register never needs them."""
    def make() -> Clients:
        clients = Clients(resolve_endpoint(inventory_endpoint))
        clients.check_credentials()
        return clients
    return make
