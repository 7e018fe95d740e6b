"""Settings: one frozen object, built once by the CLI (or a test) and passed down to every part."""

from __future__ import annotations

import importlib.util
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from .errors import ConfigError
from .records import ignored_key_problem

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
# A URL's scheme as a user may write it -> (the scheme SQLAlchemy is given, the driver module it needs,
# the extra that installs it). Plain postgresql:// and mysql:// would make SQLAlchemy look for psycopg2
# and mysqlclient, which katapult-etl does not install: they mean the drivers it does.
DATABASE_SCHEMES = {
    "sqlite": ("sqlite", "sqlite3", None),
    "sqlite+pysqlite": ("sqlite+pysqlite", "sqlite3", None),
    "postgresql": ("postgresql+psycopg", "psycopg", "postgresql"),
    "postgresql+psycopg": ("postgresql+psycopg", "psycopg", "postgresql"),
    "mysql": ("mysql+pymysql", "pymysql", "mysql"),
    "mysql+pymysql": ("mysql+pymysql", "pymysql", "mysql"),
    "mariadb": ("mariadb+pymysql", "pymysql", "mysql"),
    "mariadb+pymysql": ("mariadb+pymysql", "pymysql", "mysql"),
}
SUPPORTED_DATABASES = "sqlite:///PATH, postgresql://…, mysql://… or mariadb://…"
_URL = re.compile(r"(?P<scheme>[A-Za-z0-9+_.-]+)://(?P<rest>.*)", re.DOTALL)
_PASSWORD = re.compile(r"(?P<user>//[^/:@]*):[^/@]*@")
SQLITE_HEADER = b"SQLite format 3\x00"
# A URL's `user:password@`: everything before the last @ of its authority (passwords may hold an @).
_CREDENTIALS = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)?[^/?#]*@")


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

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigError(f"--max-attempts must be at least 1, not {self.max_attempts}")
        if not self.run_budget_seconds >= 0:  # `not >=` also refuses NaN
            raise ConfigError(f"--retry-budget must be 0 seconds or more, not {self.run_budget_seconds:g}")


@dataclass(frozen=True)
class NotifyTarget:
    """Where a run's notifications go: a webhook URL, and the secret that signs them (None: unsigned).

    The URL may carry credentials (`https://user:password@host/hook`, sent as HTTP basic auth); they
    and the secret never reach a log, an output or the table: everything shown or stored uses
    `stored_url`, the URL without them. Neither is in the repr.
    """

    url: str = field(repr=False)
    secret: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        parts = urlsplit(self.url) if _is_web_url(self.url) else None
        if parts is None:
            raise ConfigError(f"--notify-url {self.stored_url!r}: give an http:// or https:// URL with a host")
        if self.has_credentials and parts.scheme == "http" and not _is_loopback(parts.hostname or ""):
            raise ConfigError(
                f"refusing to send the credentials of --notify-url {self.stored_url} over plain http: use https"
            )
        if self.secret is not None and not self.secret:
            raise ConfigError(f"the secret of --notify-url {self.stored_url} is empty")

    @property
    def has_credentials(self) -> bool:
        return self.stored_url != self.url

    @property
    def stored_url(self) -> str:
        """The URL as logs, outputs and notifications.target_url show it: without user or password."""
        return without_credentials(self.url)

    def __repr__(self) -> str:
        return f"NotifyTarget({self.stored_url!r}, signed={self.secret is not None})"


def _is_web_url(url: str) -> bool:
    """http or https, with a host, and a port that is a number (urlsplit checks it only when asked)."""
    try:
        parts = urlsplit(url)
        return parts.scheme in ("http", "https") and bool(parts.hostname) and (parts.port is None or parts.port > 0)
    except ValueError:
        return False


def without_credentials(url: str) -> str:
    """The URL with any `user:password@` left out of its authority (a URL too broken to parse too)."""
    return _CREDENTIALS.sub(lambda match: match["scheme"] or "", url, count=1)


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
    # Webhooks each run with changes notifies (--notify-url), and that `katapult-etl notify` delivers to.
    notify: tuple[NotifyTarget, ...] = ()
    # Keys (dotted paths) still stored in `raw` whose change alone makes no new version: --ignore-key.
    ignore_keys: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for key in self.ignore_keys:
            problem = ignored_key_problem(key)
            if problem:
                raise ConfigError(f"--ignore-key {key!r}: {problem}")
        if not 1 <= self.per_page <= MAX_PER_PAGE:
            raise ConfigError(f"--per-page must be between 1 and {MAX_PER_PAGE}, not {self.per_page}")
        if not 1 <= self.concurrency <= MAX_CONCURRENCY:
            raise ConfigError(f"--concurrency must be between 1 and {MAX_CONCURRENCY}, not {self.concurrency}")
        if self.max_page_bytes < 1:
            raise ConfigError(f"the page size bound must be at least 1 byte, not {self.max_page_bytes}")
        for option, seconds in (("--connect-timeout", self.connect_timeout), ("--read-timeout", self.read_timeout)):
            if not seconds > 0:  # `not >` also refuses NaN
                raise ConfigError(f"{option} must be more than 0 seconds, not {seconds:g}")
        if not self.scope.is_public and not self.token:
            raise ConfigError("an organization's packages need an API token: set KATAPULT_API_TOKEN or --token-file")
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


def database_url(given: str | None, environ: Mapping[str, str], configured: str | None = None) -> str:
    """The database URL to use: --database-url, else DATABASE_URL, else the configuration file's, else
    the SQLite default; checked and with its driver spelled out. A ConfigError (usage, exit 2) names what
    is wrong, never a password."""
    url = given or environ.get("DATABASE_URL") or configured or DEFAULT_DATABASE_URL
    match = _URL.fullmatch(url)
    if match is None or match["scheme"].lower() not in DATABASE_SCHEMES:
        raise ConfigError(
            f"not a database URL katapult-etl supports: {mask_password(url)!r} (use {SUPPORTED_DATABASES})"
        )
    scheme, driver, extra = DATABASE_SCHEMES[match["scheme"].lower()]
    if importlib.util.find_spec(driver) is None:
        raise ConfigError(
            f"{match['scheme']}:// needs the {driver} driver, which is not installed: "
            f"pip install 'katapult-etl[{extra}]'"
        )
    url = f"{scheme}://{match['rest']}"
    if scheme.startswith("sqlite"):
        _check_sqlite_file(match["rest"])
    return url


def _check_sqlite_file(rest: str) -> None:
    """A file that exists must be a SQLite database: else every later step fails in its own words, and
    the run lock leaves a file beside it."""
    path_text = rest[1:].split("?", 1)[0] if rest.startswith("/") else ""
    if path_text in ("", ":memory:"):
        return
    path = Path(path_text)
    if path.is_dir():
        raise ConfigError(f"the SQLite database {path} is a folder, not a file")
    try:
        with path.open("rb") as file:
            header = file.read(len(SQLITE_HEADER))
    except FileNotFoundError:
        return  # a new database: created by the command that writes one
    except OSError as error:
        raise ConfigError(f"cannot read the SQLite database {path}: {error.strerror}") from None
    if header and header != SQLITE_HEADER:
        raise ConfigError(f"{path} is not a SQLite database")


def mask_password(url: str) -> str:
    """The URL with any password replaced by ***, for messages and --help."""
    return _PASSWORD.sub(r"\g<user>:***@", url)
