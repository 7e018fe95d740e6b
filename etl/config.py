"""Settings: one frozen object, built once by the CLI (or a test) and passed down to every part."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .errors import ConfigError

DEFAULT_DATABASE_URL = "sqlite:///katapult.db"
DEFAULT_API_URL = "https://api.katapult.io"
MAX_PER_PAGE = 200
# More fetchers than this only multiply threads and connections: Katapult's rate limit (600 a minute)
# is reached well before, and the pacer would hold them back anyway.
MAX_CONCURRENCY = 16
# A page of 200 packages is about 200 KB; one over 50 MB is not a page of this catalogue, and reading
# stops there rather than holding it all in memory.
MAX_PAGE_BYTES = 50 * 1024 * 1024
TOKEN_TEXT = re.compile(r"[\x21-\x7e]+")  # visible ASCII, no spaces


@dataclass(frozen=True)
class Scope:
    """Which packages a run lists: the public ones, or one organization's (public and private)."""

    organization_id: str | None = None
    organization_sub_domain: str | None = None

    def __post_init__(self) -> None:
        if self.organization_id and self.organization_sub_domain:
            raise ConfigError("give an organization id or a sub-domain, not both")

    @property
    def is_public(self) -> bool:
        return not (self.organization_id or self.organization_sub_domain)

    @property
    def key(self) -> str:
        """The scope as stored in sync_runs.scope and package_listings.scope."""
        if self.organization_id:
            return f"organization[id]={self.organization_id}"
        if self.organization_sub_domain:
            return f"organization[sub_domain]={self.organization_sub_domain}"
        return "public"

    @property
    def query(self) -> dict[str, str]:
        if self.organization_id:
            return {"organization[id]": self.organization_id}
        if self.organization_sub_domain:
            return {"organization[sub_domain]": self.organization_sub_domain}
        return {}


@dataclass(frozen=True)
class RetryPolicy:
    """How hard one run tries before it gives up: per request, and in total."""

    max_attempts: int = 8
    run_budget_seconds: float = 300.0
    backoff_initial: float = 1.0
    backoff_max: float = 60.0


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    api_url: str = DEFAULT_API_URL
    # repr=False: the token must never reach a log line, a traceback or an error message.
    token: str | None = field(default=None, repr=False)
    scope: Scope = field(default_factory=Scope)
    per_page: int = MAX_PER_PAGE
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    concurrency: int = 4
    max_page_bytes: int = MAX_PAGE_BYTES
    allow_mass_removal: bool = False
    dry_run: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.per_page <= MAX_PER_PAGE:
            raise ConfigError(f"--per-page must be between 1 and {MAX_PER_PAGE}, not {self.per_page}")
        if not 1 <= self.concurrency <= MAX_CONCURRENCY:
            raise ConfigError(f"--concurrency must be between 1 and {MAX_CONCURRENCY}, not {self.concurrency}")
        if self.max_page_bytes < 1:
            raise ConfigError(f"the page size bound must be at least 1 byte, not {self.max_page_bytes}")
        if not self.scope.is_public and not self.token:
            raise ConfigError(
                "an organization's packages need an API token: set KATAPULT_API_TOKEN or --token-file"
            )
        if self.token:
            check_token_text(self.token)
            check_token_transport(self.api_url)

    @property
    def api(self) -> str:
        """'core' with a token (Katapult's authenticated API), 'public' without."""
        return "core" if self.token else "public"


def check_token_text(token: str) -> None:
    """A token must fit in an HTTP header as it is; else HTTP libraries quote it in their errors."""
    if not TOKEN_TEXT.fullmatch(token):
        raise ConfigError(
            "the API token has spaces, control or non-ASCII characters in it: check KATAPULT_API_TOKEN "
            "or --token-file (the token is not shown)"
        )


def check_token_transport(api_url: str) -> None:
    """Refuse to send a token anywhere but over https, or plain http to this machine (tests)."""
    parts = urlsplit(api_url)
    if parts.scheme == "https":
        return
    if parts.scheme == "http" and _is_loopback(parts.hostname or ""):
        return
    raise ConfigError(f"refusing to send the API token to {parts.scheme}://{parts.hostname}: use https")


def is_loopback_url(url: str) -> bool:
    return _is_loopback(urlsplit(url).hostname or "")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
