"""Core of igris: users, organisations (tenants), members, invitations, API keys, MCP servers."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib.auth.base_user import BaseUserManager
from django.contrib.auth.models import AbstractUser
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from governance.permissions import Role

SLUG_VALIDATOR = RegexValidator(
    r"^[a-z0-9][a-z0-9_-]{2,63}$",
    "Use 3-64 lowercase letters, digits, '_' or '-', starting with a letter or digit.",
)


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def _create(self, email: str, password: str | None, **extra: object) -> User:
        if not email:
            raise ValueError("an e-mail address is required")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **extra: object) -> User:
        extra.setdefault("is_staff", False)
        extra.setdefault("is_superuser", False)
        return self._create(email, password, **extra)

    def create_superuser(self, email: str, password: str | None = None, **extra: object) -> User:
        extra.update(is_staff=True, is_superuser=True)
        return self._create(email, password, **extra)


class User(AbstractUser):
    """A person who signs in to the console; identified by e-mail (no username)."""

    username = None  # type: ignore[assignment,misc]
    email = models.EmailField("e-mail address", unique=True)

    USERNAME_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []  # type: ignore[misc]
    objects = UserManager()  # type: ignore[misc,assignment]

    def __str__(self) -> str:
        return self.email


class Posture(models.TextChoices):
    ALLOW = "allow", "Allow when no rule matches"
    DENY = "deny", "Deny when no rule matches"


DEFAULT_RETENTION_DAYS = 400


def validate_retention_days(value: int) -> None:
    """At least settings.IGRIS_AUDIT_RETENTION_MIN_DAYS: EU AI Act Art. 19(1) and 26(6) keep the
    logs of a high-risk AI system for at least six months. Read when validating, not frozen into
    a migration or a database constraint, so the minimum stays a setting."""
    minimum = settings.IGRIS_AUDIT_RETENTION_MIN_DAYS
    if value < minimum:
        raise ValidationError(
            "%(value)s is below the minimum of %(minimum)s days: the EU AI Act (Art. 19 and "
            "26(6)) keeps the logs of a high-risk AI system for at least six months.",
            code="min_value",
            params={"value": value, "minimum": minimum},
        )


def default_retention_days() -> int:
    # A minimum set above the usual default must not make new organisations invalid.
    return max(DEFAULT_RETENTION_DAYS, settings.IGRIS_AUDIT_RETENTION_MIN_DAYS)


class Organization(models.Model):
    """The tenant: every governed object belongs to exactly one organisation."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=64, unique=True, validators=[SLUG_VALIDATOR])
    default_posture = models.CharField(
        max_length=8,
        choices=Posture.choices,
        default=Posture.DENY,
        help_text="Decision for a call that no policy rule matches.",
    )
    block_drifted_tools = models.BooleanField(
        default=True, help_text="Refuse calls to a tool whose description changed until approved."
    )
    auto_suspend_on_anomaly = models.BooleanField(
        default=False, help_text="Suspend an agent session automatically when an anomaly fires."
    )
    audit_retention_days = models.PositiveIntegerField(
        default=default_retention_days,
        validators=[validate_retention_days],
        help_text="Days audit events are kept: at least IGRIS_AUDIT_RETENTION_MIN_DAYS (183 by "
        "default; EU AI Act Art. 19 and 26(6): six months).",
    )
    redact_argument_keys = models.JSONField(
        default=list,
        blank=True,
        help_text="Extra argument names to mask in the audit log, besides secret-looking ones.",
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(audit_retention_days__gte=1), name="org_retention_positive"
            )
        ]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=[(r.value, r.value.title()) for r in Role])
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at"]
        constraints = [
            models.UniqueConstraint(fields=["org", "user"], name="membership_unique_user_per_org")
        ]

    def __str__(self) -> str:
        return f"{self.user} @ {self.org} ({self.role})"


class Invitation(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField()
    role = models.CharField(max_length=16, choices=[(r.value, r.value.title()) for r in Role])
    token_hash = models.CharField(max_length=64, unique=True)
    invited_by = models.ForeignKey(User, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["org", "email"],
                condition=Q(accepted_at__isnull=True, revoked_at__isnull=True),
                name="invitation_one_open_per_email",
            )
        ]

    @property
    def is_open(self) -> bool:
        return self.accepted_at is None and self.revoked_at is None

    @property
    def is_expired(self) -> bool:
        return self.expires_at <= timezone.now()

    def __str__(self) -> str:
        return f"{self.email} → {self.org} ({self.role})"


class Scope(models.TextChoices):
    PROXY = "proxy", "proxy: call MCP servers through igris"
    READ = "read", "read: read the REST API"
    WRITE = "write", "write: change things through the REST API"
    INGEST = "ingest", "ingest: send events from other gateways"
    ADMIN = "admin", "admin: manage members and keys through the REST API"


class ApiKey(models.Model):
    """A programmatic credential: `ig_<prefix><secret>`; only a salted hash is stored."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=120)
    prefix = models.CharField(max_length=16, unique=True, help_text="Visible lookup prefix.")
    salt = models.CharField(max_length=32)
    secret_hash = models.CharField(max_length=64)
    scopes = models.JSONField(default=list)
    tags = models.JSONField(default=list, blank=True, help_text="Labels usable in policy rules.")
    allowed_servers = models.ManyToManyField(  # type: ignore[var-annotated]
        "McpServer",
        blank=True,
        related_name="+",
        help_text="If set, the key may only reach these servers.",
    )
    created_by = models.ForeignKey(User, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    @property
    def display(self) -> str:
        return f"ig_{self.prefix}…"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and (
            self.expires_at is None or self.expires_at > timezone.now()
        )

    def __str__(self) -> str:
        return f"{self.name} ({self.display})"


class Transport(models.TextChoices):
    STREAMABLE_HTTP = "streamable_http", "Streamable HTTP"


class UpstreamAuth(models.TextChoices):
    NONE = "none", "No credential"
    BEARER = "bearer", "Authorization: Bearer <credential>"
    HEADER = "header", "Custom header"


class McpServer(models.Model):
    """An upstream MCP server reachable through `/proxy/<slug>/mcp`."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="servers")
    name = models.CharField(max_length=120)
    slug = models.CharField(max_length=64, validators=[SLUG_VALIDATOR])
    description = models.TextField(blank=True)
    upstream_url = models.URLField(max_length=500)
    transport = models.CharField(
        max_length=20, choices=Transport.choices, default=Transport.STREAMABLE_HTTP
    )
    auth_type = models.CharField(max_length=8, choices=UpstreamAuth.choices, default="none")
    auth_header_name = models.CharField(max_length=100, blank=True)
    credential_encrypted = models.BinaryField(null=True, blank=True, editable=False)
    connect_timeout_s = models.FloatField(default=5.0)
    total_timeout_s = models.FloatField(default=300.0)
    enabled = models.BooleanField(default=True)
    created_by = models.ForeignKey(User, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "MCP server"
        constraints = [
            models.UniqueConstraint(fields=["org", "slug"], name="server_unique_slug_per_org"),
            models.CheckConstraint(
                condition=Q(connect_timeout_s__gt=0, total_timeout_s__gt=0),
                name="server_timeouts_positive",
            ),
        ]

    @property
    def has_credential(self) -> bool:
        return bool(self.credential_encrypted)

    def __str__(self) -> str:
        return f"{self.name} ({self.slug})"


class PendingEvent(models.Model):
    """Transactional outbox: a state change and its audit event commit together.

    The audit writer (compliance) moves these into the hash-chained audit table and deletes
    them here; governance never imports compliance, so upward news travels as this data.
    """

    id = models.BigAutoField(primary_key=True)
    org_id = models.UUIDField(db_index=True)
    payload = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"pending event {self.pk} ({self.payload.get('type', '?')})"


# --- policies, tools, sessions, anomalies ---------------------------------------------------------


class PolicyDraft(models.Model):
    """The editable, ordered rule list of an organisation (one draft per organisation)."""

    org = models.OneToOneField(Organization, on_delete=models.CASCADE, related_name="policy_draft")
    rules = models.JSONField(default=list, blank=True)
    base_version = models.PositiveIntegerField(null=True, blank=True)
    updated_by = models.ForeignKey(User, null=True, on_delete=models.SET_NULL, related_name="+")
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"draft of {self.org}"


class PolicyVersion(models.Model):
    """An immutable, numbered, published rule list; the proxy enforces the newest one."""

    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="policy_versions")
    number = models.PositiveIntegerField()
    rules = models.JSONField(default=list)
    posture = models.CharField(max_length=8, choices=Posture.choices)
    note = models.CharField(max_length=300, blank=True)
    rolled_back_from = models.PositiveIntegerField(null=True, blank=True)
    published_by = models.ForeignKey(User, null=True, on_delete=models.SET_NULL, related_name="+")
    published_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-number"]
        constraints = [
            models.UniqueConstraint(fields=["org", "number"], name="policy_version_unique_number")
        ]

    def __str__(self) -> str:
        return f"{self.org} policy v{self.number}"

    @property
    def rollback_summary(self) -> str:
        """What a rollback did, e.g. "Rolled back to v1 (from v3)"; empty for a plain publish.

        `rolled_back_from` holds the version whose rules were copied, the one rolled back *to*.
        Versions are numbered without gaps per organisation (services.policies._new_version
        takes the next number under a lock, and none is ever deleted on its own), so the version
        enforced until this one was published is the one numbered just before it."""
        if self.rolled_back_from is None:
            return ""
        return f"Rolled back to v{self.rolled_back_from} (from v{self.number - 1})"


class ToolState(models.TextChoices):
    APPROVED = "approved", "Approved"
    DRIFTED = "drifted", "Changed since approval"


class Tool(models.Model):
    """A tool seen on an upstream server, with the fingerprint last approved (rug-pull guard)."""

    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="tools")
    server = models.ForeignKey(McpServer, on_delete=models.CASCADE, related_name="tools")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    input_schema = models.JSONField(default=dict, blank=True)
    annotations = models.JSONField(default=dict, blank=True)
    fingerprint = models.CharField(max_length=64)
    approved_fingerprint = models.CharField(max_length=64)
    approved_description = models.TextField(blank=True)
    approved_input_schema = models.JSONField(default=dict, blank=True)
    state = models.CharField(max_length=10, choices=ToolState.choices, default=ToolState.APPROVED)
    first_seen_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    approved_by = models.ForeignKey(User, null=True, on_delete=models.SET_NULL, related_name="+")
    approved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["server", "name"]
        constraints = [
            models.UniqueConstraint(fields=["server", "name"], name="tool_unique_name_per_server")
        ]

    def __str__(self) -> str:
        return f"{self.server.slug}/{self.name}"


class SessionState(models.TextChoices):
    ACTIVE = "active", "Active"
    SUSPENDED = "suspended", "Suspended"
    KILLED = "killed", "Killed"
    CLOSED = "closed", "Closed"


class AgentSession(models.Model):
    """One agent's session through the proxy (legacy: an Mcp-Session-Id; modern: key + server +
    client identity)."""

    id = models.CharField(primary_key=True, max_length=64)
    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="agent_sessions")
    server = models.ForeignKey(McpServer, null=True, on_delete=models.SET_NULL, related_name="+")
    server_slug = models.CharField(max_length=64)
    key = models.ForeignKey(
        ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    user = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    era = models.CharField(max_length=8)  # legacy | modern
    protocol_version = models.CharField(max_length=20, blank=True)
    client_name = models.CharField(max_length=200, blank=True)
    client_version = models.CharField(max_length=100, blank=True)
    # 2026-07-28 era: the agent slot (key or user, server, client) this session is a generation
    # of; a kill moves the slot to its next generation (governance.runtime.flags).
    slot = models.CharField(max_length=64, blank=True, db_index=True)
    generation = models.PositiveIntegerField(default=0)
    state = models.CharField(
        max_length=10, choices=SessionState.choices, default=SessionState.ACTIVE
    )
    state_reason = models.CharField(max_length=300, blank=True)
    calls = models.PositiveIntegerField(default=0)
    denied = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-last_seen_at"]
        indexes = [models.Index(fields=["org", "state", "-last_seen_at"])]

    def __str__(self) -> str:
        return f"{self.id} ({self.state})"


class KillScope(models.TextChoices):
    ORG = "org", "Organisation"
    KEY = "key", "API key"
    SERVER = "server", "MCP server"


class KillSwitch(models.Model):
    """A standing stop on a key, a server or the whole organisation, until lifted.

    The proxy reads stops from hot-state flags (one round trip with admission); this row is the
    record they are restored from when the hot state lost them (a Redis restarted without its
    data, or the embedded default restarted). Session kills live on AgentSession itself.
    """

    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="kill_switches")
    scope = models.CharField(max_length=8, choices=KillScope.choices)
    target_id = models.UUIDField()  # the key's, the server's, or the organisation's own id
    reason = models.CharField(max_length=300, blank=True)
    created_by = models.ForeignKey(User, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["scope", "target_id"], name="kill_switch_unique"),
            models.CheckConstraint(
                condition=Q(scope__in=KillScope.values), name="kill_switch_scope"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.scope} {self.target_id} stopped"


class AnomalyStatus(models.TextChoices):
    OPEN = "open", "Open"
    ACKNOWLEDGED = "acknowledged", "Acknowledged"
    RESOLVED = "resolved", "Resolved"


class AnomalyKind(models.TextChoices):
    """What the detectors record (proxy/anomalies.py; ingestion records destructive_pattern)."""

    RATE_SPIKE = "rate_spike", "Rate spike"
    DESTRUCTIVE_PATTERN = "destructive_pattern", "Destructive tool"
    TOOL_DRIFT = "tool_drift", "Tool drift"
    POLICY_ALERT = "policy_alert", "Policy alert"


class Anomaly(models.Model):
    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="anomalies")
    session = models.ForeignKey(
        AgentSession, null=True, blank=True, on_delete=models.SET_NULL, related_name="anomalies"
    )
    server_slug = models.CharField(max_length=64, blank=True)
    kind = models.CharField(max_length=40)  # an AnomalyKind
    severity = models.CharField(max_length=10, default="medium")
    tool = models.CharField(max_length=200, blank=True)
    detail = models.JSONField(default=dict, blank=True)
    event_id = models.UUIDField(unique=True, null=True, blank=True)
    status = models.CharField(
        max_length=14, choices=AnomalyStatus.choices, default=AnomalyStatus.OPEN
    )
    note = models.TextField(blank=True)
    resolved_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "anomalies"
        # The anomaly list and the observe dashboard read an organisation's anomalies by time.
        indexes = [models.Index(fields=["org", "created_at"], name="anomaly_org_created")]

    def __str__(self) -> str:
        return f"{self.kind} in {self.org}"


# --- ingestion -----------------------------------------------------------------------------------


class IngestProvider(models.TextChoices):
    """The payload shapes /api/v1/ingest/<provider> reads (compliance/ingest/providers.py)."""

    GENERIC = "generic", "igris JSON events"
    OTLP = "otlp", "OpenTelemetry (OTLP/HTTP JSON, GenAI conventions)"
    PORTKEY = "portkey", "Portkey logs"
    HELICONE = "helicone", "Helicone webhooks"
    DATADOG = "datadog", "Datadog LLM Observability spans"
    CLOUDFLARE = "cloudflare", "Cloudflare AI Gateway (Logpush)"
    CLOUDWATCH = "cloudwatch", "Amazon CloudWatch Logs subscription"


class IngestSource(models.Model):
    """An outside gateway or collector that sends its events to igris, for one organisation.

    Requests carry `X-Igris-Source: <id>` and an HMAC signature made with the source's own secret.
    HMAC verification needs the raw secret, so it is stored encrypted (AES-GCM, bound to the
    source id), not hashed; it is shown once, when created or rotated.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="ingest_sources")
    name = models.CharField(max_length=120)
    provider = models.CharField(max_length=16, choices=IngestProvider.choices)
    secret_encrypted = models.BinaryField(editable=False)
    created_by = models.ForeignKey(User, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    rotated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["org", "name"], name="ingest_source_unique_name"),
            models.CheckConstraint(
                condition=Q(provider__in=IngestProvider.values), name="ingest_source_provider"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.provider})"
