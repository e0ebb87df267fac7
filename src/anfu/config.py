"""The one Settings class: the only reader of the environment (``ANFU_*`` variables)."""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_NOTIFY_SCHEDULE = (240, 600, 600, 3600, 7200, 21600, 54000)  # Alipay's, in seconds


def _networks(value: str) -> tuple[IPv4Network | IPv6Network, ...]:
    return tuple(ip_network(part.strip(), strict=False)
                 for part in value.split(",") if part.strip())


def split_addr(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ANFU_", extra="ignore")

    env: str = Field("development", description="development | test | production")
    home: Path = Field(Path("var"), description="state folder: database, keys, logs")
    database_url: str = Field("", description="default: sqlite file anfu.db in ANFU_HOME")

    mobile_addr: str = "127.0.0.1:8000"
    merchant_addr: str = "127.0.0.1:8001"
    admin_addr: str = "127.0.0.1:8002"

    # The listeners' edges (docs/security.md, "The admin zone and the listeners' edges").
    admin_token: SecretStr | None = Field(None, description="admin zone bearer token; unset:"
                                          " made at first start, only its hash kept")
    admin_hosts: str = Field("", description="Host values the admin zone answers,"
                             " comma-separated (default: its address, localhost:<port>,"
                             " 127.0.0.1:<port>, [::1]:<port>)")
    max_body_bytes: int = Field(64 * 1024, ge=1024, description="largest request body on"
                                " the mobile and merchant zones")
    admin_max_body_bytes: int = Field(256 * 1024, ge=1024, description="largest request"
                                      " body on the admin zone (CSRs, PEM keys)")
    header_timeout_s: float = Field(10.0, gt=0, le=300, description="a request head (line"
                                    " and headers) must arrive within this time")
    trusted_proxies: str = Field("", description="addresses whose X-Forwarded-For is"
                                 " believed, comma-separated (default: none)")
    sandbox_routes: bool = Field(False, description="serve the sandbox carrier's token route"
                                 " and the admin SMS outbox (never in production)")

    default_fee_bps: int = Field(60, ge=0, le=10000, description="merchant fee, basis points")
    pay_timeout_s: int = Field(15 * 60, gt=0)
    confirm_timeout_s: int = Field(10 * 24 * 3600, gt=0)
    max_pay_timeout_s: int = Field(15 * 24 * 3600, gt=0)
    notify_schedule: str = ",".join(str(s) for s in DEFAULT_NOTIFY_SCHEDULE)
    notify_timeout_s: float = Field(10.0, gt=0, description="one notification attempt, all"
                                    " of it: DNS, connect, TLS, request and reply")
    notify_allow_nets: str = Field("", description="private or special ranges notify URLs"
                                   " may reach, comma-separated CIDRs (default: none; the"
                                   " platform's own listeners stay refused)")
    signature_window_s: int = Field(300, gt=0)
    access_token_ttl_s: int = Field(600, gt=0, le=600, description="at most 10 minutes")
    refresh_token_ttl_s: int = Field(30 * 24 * 3600, gt=0)
    idempotency_ttl_s: int = Field(48 * 3600, ge=24 * 3600)
    max_amount: int = Field(10**12, gt=0)

    token_secret: SecretStr | None = Field(None, description="HMAC key for access tokens")
    key_passphrase: SecretStr | None = Field(None, description="encrypts platform keys")
    data_key: SecretStr | None = Field(None, description="seals TOTP secrets, keys SMS codes")

    group_commit_max: int = Field(256, gt=0)
    group_commit_wait_ms: float = Field(1.0, ge=0)
    worker_poll_s: float = Field(0.5, gt=0)
    run_worker: bool = True

    bank_latency_ms: int = Field(20, ge=0, description="sandbox bank: reply latency")
    bank_failure_rate: float = Field(0.0, ge=0, le=1, description="sandbox bank: refusals")

    auth_policy: Path | None = Field(None, description="auth policy TOML (default: built-in)")
    dpop_max_age_s: int = Field(60, gt=0, le=600, description="oldest DPoP proof taken")
    sms_latency_ms: int = Field(300, ge=0, description="sandbox SMS gateway: receipt latency")
    sms_failure_rate: float = Field(0.0, ge=0, le=1, description="sandbox SMS: failed share")
    sms_phone_limits: str = Field("1/60,5/3600,10/86400",
                                  description="codes per phone: count/seconds,...")
    sms_address_limits: str = Field("5/60,30/3600,100/86400",
                                    description="codes per client address: count/seconds,...")
    carrier_latency_ms: int = Field(30, ge=0, description="sandbox carrier: reply latency")
    sim_change_hold_s: int = Field(72 * 3600, ge=0,
                                   description="no SIM-only login this long after a SIM change")
    webauthn_rp_id: str = Field("localhost", description="passkeys: relying party id")
    attestation_roots: str = Field(
        "", description="Android key attestation: PEM file(s) of the accepted roots,"
        " separated by the path separator (:); none: no device key counts as hardware-bound")
    webauthn_origins: str = Field("", description="passkeys: allowed origins, comma-separated"
                                  " (default: http://localhost:<mobile port>)")

    # Trust: platform keys, PKI, TLS, transaction signing, transparency log.
    keystore: str = Field("file", pattern="^(file|pkcs11)$",
                          description="where platform keys live: encrypted PKCS#8 files"
                          " under ANFU_HOME/keys, or a PKCS#11 token (HSM, SoftHSM2)")
    pkcs11_module: str = Field("/usr/lib/softhsm/libsofthsm2.so",
                               description="PKCS#11 library (ANFU_KEYSTORE=pkcs11)")
    pkcs11_token: str = Field("anfu", description="PKCS#11 token label")
    pkcs11_pin: SecretStr | None = Field(None, description="PKCS#11 user PIN")
    pki_public_url: str = Field("", description="base URL of /pki/... named in certificates"
                                " (CRL distribution point, OCSP); default: the mobile zone")
    pki_device_cert_days: int = Field(7, ge=1, le=7, description="device certificates: days")
    pki_merchant_cert_days: int = Field(365, ge=1, le=825)
    pki_server_cert_days: int = Field(90, ge=1, le=398)
    pki_crl_hours: int = Field(24, ge=1, description="CRL and OCSP next-update interval")
    tls: bool = Field(False, description="serve every listener over TLS (1.3, 1.2 minimum)"
                      " with a platform-issued server certificate")
    tls_hostnames: str = Field("localhost,127.0.0.1",
                               description="names and addresses in the server certificate")
    merchant_mtls: str = Field("off", pattern="^(off|optional|required)$",
                               description="merchant zone: client certificates from our CA")
    log_sth_interval_s: float = Field(1.0, gt=0, description="transparency log: how often"
                                      " new entries are sequenced and a tree head signed")
    log_batch_max: int = Field(50_000, gt=0, description="transparency log: entries per"
                               " sequencing batch")

    argon2_time_cost: int = Field(2, ge=1)
    argon2_memory_kib: int = Field(19456, ge=1024)
    argon2_parallelism: int = Field(1, ge=1)
    hash_workers: int = Field(1, ge=1, le=64, description="Argon2id threads per process")
    hash_nice: int = Field(10, ge=0, le=19, description="CPU niceness of the Argon2id threads"
                           " (Linux): payments win the CPU during a login flood")

    log_level: str = "INFO"
    log_json: bool = True

    @field_validator("notify_schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        parts = [p.strip() for p in value.split(",") if p.strip()]
        if not parts or any(not p.isdigit() for p in parts):
            raise ValueError("ANFU_NOTIFY_SCHEDULE: comma-separated whole seconds, e.g. 240,600")
        return value

    @field_validator("notify_allow_nets")
    @classmethod
    def _allow_nets(cls, value: str) -> str:
        try:
            _networks(value)
        except ValueError as exc:
            raise ValueError(f"ANFU_NOTIFY_ALLOW_NETS: comma-separated CIDRs, e.g."
                             f" 10.20.0.0/16,fd12::/48 ({exc})") from exc
        return value

    @field_validator("sms_phone_limits", "sms_address_limits")
    @classmethod
    def _limits(cls, value: str) -> str:
        for part in value.split(","):
            count, _, seconds = part.strip().partition("/")
            if not (count.isdigit() and seconds.isdigit() and int(count) > 0):
                raise ValueError("SMS limits: comma-separated count/seconds, e.g. 1/60,5/3600")
        return value

    @field_validator("admin_token")
    @classmethod
    def _admin_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None  # ANFU_ADMIN_TOKEN= (empty) means unset: the bootstrap token is used
        if len(value.get_secret_value()) < 16:
            raise ValueError("ANFU_ADMIN_TOKEN: at least 16 characters (e.g. from"
                             " `python -c 'import secrets; print(secrets.token_urlsafe())'`)")
        return value

    @model_validator(mode="after")
    def _production_guard(self) -> Settings:
        if self.env == "production" and self.sandbox_routes:
            raise ValueError("ANFU_SANDBOX_ROUTES=true is refused with ANFU_ENV=production:"
                             " sandbox routes hand out network tokens and SMS codes")
        if self.env == "production" and (
                self.token_secret is None or self.key_passphrase is None
                or self.data_key is None):
            raise ValueError(
                "ANFU_ENV=production needs ANFU_TOKEN_SECRET, ANFU_KEY_PASSPHRASE and"
                " ANFU_DATA_KEY set;"
                " development defaults are refused")
        return self

    @property
    def notify_delays(self) -> tuple[int, ...]:
        return tuple(int(p) for p in self.notify_schedule.split(",") if p.strip())

    @property
    def notify_allow_networks(self) -> tuple[IPv4Network | IPv6Network, ...]:
        return _networks(self.notify_allow_nets)

    @property
    def passkey_origins(self) -> list[str]:
        if self.webauthn_origins:
            return [o.strip() for o in self.webauthn_origins.split(",") if o.strip()]
        port = split_addr(self.mobile_addr)[1]
        return [f"http://{self.webauthn_rp_id}:{port}"]

    @property
    def admin_host_names(self) -> frozenset[str]:
        """What the admin zone accepts in ``Host`` (lower case, with the port)."""
        if self.admin_hosts:
            return frozenset(h.strip().lower() for h in self.admin_hosts.split(",")
                             if h.strip())
        port = split_addr(self.admin_addr)[1]
        return frozenset({self.admin_addr.lower(), f"localhost:{port}", f"127.0.0.1:{port}",
                          f"[::1]:{port}"})

    @property
    def trusted_proxy_list(self) -> list[str]:
        return [p.strip() for p in self.trusted_proxies.split(",") if p.strip()]

    @property
    def tls_names(self) -> list[str]:
        return [n.strip() for n in self.tls_hostnames.split(",") if n.strip()]

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.home / 'anfu.db').resolve()}"

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")
