"""Device registry: registration, enrollment, identity checks, labels, revocation, presence."""

from __future__ import annotations

import dataclasses
import logging
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import case, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from controller.monitoring.events import EventListener, FleetEvent, announce
from controller.pki import CertificateAuthority
from controller.services.device_labels import check_labels, check_shown_text
from controller.services.presence import MAX_PENDING, PresenceBuffer, TtlCache
from controller.store.db import Database
from controller.store.models import DeviceRow, EnrollmentTokenRow
from edgefleet import topics
from edgefleet.enrollment import EnrollmentToken, hash_secret, split_credential
from edgefleet.errors import AlreadyExists, InvalidInput, NotFound, Unauthenticated
from edgefleet.hardware import HardwareFacts
from edgefleet.profiles import AUTO, ProfileCatalogue

log = logging.getLogger(__name__)

DEFAULT_TOKEN_TTL_S = 24 * 3600
MAX_TOKEN_TTL_S = 30 * 24 * 3600


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class Device:
    device_id: str
    name: str
    requested_profile: str
    profile: str
    labels: Mapping[str, str]
    state: str
    facts: HardwareFacts
    online: bool
    last_seen_ms: int
    created_ms: int
    enrolled_ms: int
    cert_fingerprint: str
    agent_version: str

    def matches(self, selector: Mapping[str, str]) -> bool:
        return all(self.labels.get(k) == v for k, v in selector.items())


@dataclass(frozen=True)
class DeviceTarget:
    """What a rollout step reads of a device."""

    device_id: str
    profile: str
    state: str
    labels: Mapping[str, str]


@dataclass(frozen=True)
class DevicePresence:
    device_id: str
    name: str
    profile: str
    online: bool
    last_seen_ms: int


@dataclass(frozen=True)
class Registration:
    device: Device
    token: str
    expires_ms: int


@dataclass(frozen=True)
class Enrollment:
    device: Device
    certificate_pem: str
    ca_certificate_pem: str
    mqtt_password: str = field(repr=False)


def _facts_from_json(data: Mapping[str, Any]) -> HardwareFacts:
    names = {f.name for f in dataclasses.fields(HardwareFacts)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in names}
    return HardwareFacts(**values)  # type: ignore[arg-type]


def _to_device(row: DeviceRow) -> Device:
    return Device(
        device_id=row.device_id,
        name=row.name,
        requested_profile=row.requested_profile,
        profile=row.profile,
        labels=dict(row.labels or {}),
        state=row.state,
        facts=_facts_from_json(row.facts or {}),
        online=row.online,
        last_seen_ms=row.last_seen_ms,
        created_ms=row.created_ms,
        enrolled_ms=row.enrolled_ms,
        cert_fingerprint=row.cert_fingerprint or "",
        agent_version=row.agent_version,
    )


class DeviceRegistry:
    def __init__(
        self,
        db: Database,
        ca: CertificateAuthority,
        profiles: ProfileCatalogue,
        *,
        hash_mqtt_password: Callable[[str], str],
        on_credentials_changed: Callable[[], None] | None = None,
        clock_ms: Callable[[], int] = _now_ms,
        presence_flush_s: float = 0.0,
        auth_cache_ttl_s: float = 0.0,
    ) -> None:
        """``presence_flush_s`` > 0: presence waits in memory and ``run_presence_flusher``
        stores it that often in one batched UPDATE (0: stored by each call). ``auth_cache_ttl_s``
        > 0: a certificate's device is remembered that long (revoking, relabelling or enrolling
        through this registry forgets it at once; through another replica within the TTL)."""
        self._db = db
        self.presence_flush_s = presence_flush_s
        self._presence = PresenceBuffer(db)
        self._by_certificate: TtlCache[Device] = TtlCache(auth_cache_ttl_s)
        self._ca = ca
        self._profiles = profiles
        self._hash_mqtt_password = hash_mqtt_password
        self._on_credentials_changed = on_credentials_changed or (lambda: None)
        self._clock_ms = clock_ms
        self.listeners: list[EventListener] = []  # told of register, enroll, label, revoke

    # -- operator actions -------------------------------------------------------------------
    def register(
        self, name: str, profile: str, labels: Mapping[str, str], token_ttl_s: int = 0
    ) -> Registration:
        name = name.strip()
        check_shown_text("device name", name)
        if not name or len(name) > 128 or any(c.isspace() for c in name):
            raise InvalidInput("device name must be 1-128 characters without spaces")
        try:
            self._profiles.check_requested(profile)
        except NotFound as exc:
            raise InvalidInput(str(exc)) from None
        ttl = token_ttl_s or DEFAULT_TOKEN_TTL_S
        if not 0 < ttl <= MAX_TOKEN_TTL_S:
            raise InvalidInput(f"token lifetime must be between 1 s and {MAX_TOKEN_TTL_S} s")
        labels = check_labels(labels)
        now = self._clock_ms()
        token = EnrollmentToken.new(self._ca.pin)
        row = DeviceRow(
            device_id=f"dev-{secrets.token_hex(6)}",
            name=name,
            requested_profile=profile,
            profile="" if profile == AUTO else profile,
            labels=labels,
            state="registered",
            facts={},
            online=False,
            last_seen_ms=0,
            agent_version="",
            created_ms=now,
            enrolled_ms=0,
            revoked_ms=0,
        )
        expires = now + ttl * 1000
        try:
            with self._db.session() as s:
                if s.scalar(select(DeviceRow.device_id).where(DeviceRow.name == name)):
                    raise AlreadyExists(f"a device named {name!r} exists already")
                s.add(row)
                s.flush()
                s.add(
                    EnrollmentTokenRow(
                        token_id=token.token_id,
                        device_id=row.device_id,
                        secret_hash=hash_secret(token.secret),
                        created_ms=now,
                        expires_ms=expires,
                        used_ms=None,
                    )
                )
        except IntegrityError as exc:  # a concurrent register of the same name
            raise AlreadyExists(f"a device named {name!r} exists already") from exc
        log.info("registered device %s (%s), profile %s", row.device_id, name, profile)
        announce(self.listeners, FleetEvent("device.registered", f"registered {name}",
                 device_id=row.device_id, data={"name": name, "profile": profile}))  # fmt: skip
        return Registration(_to_device(row), str(token), expires)

    def list_devices(self, selector: Mapping[str, str] | None = None) -> list[Device]:
        self._presence.flush_before_read()
        with self._db.session() as s:
            rows = s.scalars(select(DeviceRow).order_by(DeviceRow.name)).all()
            devices = [_to_device(r) for r in rows]
        return [d for d in devices if d.matches(selector or {})]

    def rollout_targets(self, selector: Mapping[str, str] | None = None) -> list[DeviceTarget]:
        """Enrolled devices with a profile matching ``selector``: only the columns a rollout
        step reads (no facts to decode), filtered in SQL where it can be."""
        self._presence.flush_before_read()
        r = DeviceRow
        query = select(r.device_id, r.profile, r.state, r.labels).where(
            r.state == "enrolled", r.profile != ""
        )
        with self._db.session() as s:
            rows = s.execute(query.order_by(r.name)).all()
        targets = [DeviceTarget(d, p, st, dict(labels or {})) for d, p, st, labels in rows]
        return [
            t for t in targets if all(t.labels.get(k) == v for k, v in (selector or {}).items())
        ]

    def after(self, name: str, limit: int) -> list[Device]:
        """Up to ``limit`` devices whose name sorts after ``name``, by name: a keyset page
        (the unique name index), so reading a big fleet page by page costs what it returns."""
        self._presence.flush_before_read()
        query = select(DeviceRow).where(DeviceRow.name > name).order_by(DeviceRow.name)
        with self._db.session() as s:
            return [_to_device(row) for row in s.scalars(query.limit(limit))]

    def page(self, contains: str, offset: int, limit: int) -> tuple[list[Device], int]:
        """One page of the devices whose name or id contains ``contains`` (by name), and how
        many match: the dashboard's overview reads a page, not the fleet."""
        r = DeviceRow
        query = select(r)
        if contains:
            pattern = (
                "%" + contains.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            )
            query = query.where(
                r.name.ilike(pattern, escape="\\") | r.device_id.ilike(pattern, escape="\\")
            )
        self._presence.flush_before_read()
        with self._db.session() as s:
            matching = int(s.scalar(select(func.count()).select_from(query.subquery())) or 0)
            rows = s.scalars(query.order_by(r.name).offset(offset).limit(limit)).all()
            return [_to_device(row) for row in rows], matching

    def presence(self) -> list[DevicePresence]:
        """Every device's id, name, profile and presence, by name (no labels or facts to
        decode: what /metrics reads on every scrape)."""
        r = DeviceRow
        query = select(r.device_id, r.name, r.profile, r.online, r.last_seen_ms).order_by(r.name)
        self._presence.flush_before_read()
        with self._db.session() as s:
            return [DevicePresence(*row) for row in s.execute(query)]

    def presence_counts(self) -> dict[str, int]:
        """Devices in all, online, and per state (registered, enrolled, revoked)."""
        r = DeviceRow
        self._presence.flush_before_read()
        with self._db.session() as s:
            total, online = s.execute(
                select(func.count(), func.sum(case((r.online, 1), else_=0)))
            ).one()
            states = dict(s.execute(select(r.state, func.count()).group_by(r.state)).all())
        return {
            "total": int(total or 0),
            "online": int(online or 0),
            **{k: int(v) for k, v in states.items()},
        }

    def get(self, name_or_id: str) -> Device:
        self._presence.flush_before_read()
        with self._db.session() as s:
            return _to_device(self._find(s, name_or_id))

    def revoke(self, name_or_id: str) -> Device:
        # heartbeats that arrived before are stored first (after it: refused, not enrolled)
        self._presence.flush_before_read()
        with self._db.session() as s:
            row = self._find(s, name_or_id)
            row.state = "revoked"
            row.online = False
            row.revoked_ms = self._clock_ms()
            row.mqtt_password_hash = None
            s.execute(
                update(EnrollmentTokenRow)
                .where(EnrollmentTokenRow.device_id == row.device_id)
                .where(EnrollmentTokenRow.used_ms.is_(None))
                .values(used_ms=row.revoked_ms)
            )
            device = _to_device(row)
        self._forget(device.device_id)
        log.info("revoked device %s (%s)", device.device_id, device.name)
        announce(self.listeners, FleetEvent("device.revoked", f"revoked {device.name}",
                 device_id=device.device_id, data={"name": device.name}))  # fmt: skip
        self._on_credentials_changed()
        return device

    def label(self, name_or_id: str, set_: Mapping[str, str], remove: list[str]) -> Device:
        with self._db.session() as s:
            row = self._find(s, name_or_id)
            labels = dict(row.labels or {})
            labels.update(check_labels(set_))
            for key in remove:
                labels.pop(key, None)
            # labels stored before the character check stay until removed or replaced
            row.labels = check_labels(labels, characters=False)
            device = _to_device(row)
        self._forget(device.device_id)
        announce(self.listeners, FleetEvent("device.labelled", f"labels of {device.name}: "
                 f"{dict(device.labels)}", device_id=device.device_id,
                 data={"set": dict(set_), "removed": list(remove)}))  # fmt: skip
        return device

    # -- device actions ---------------------------------------------------------------------
    def enroll(
        self, credential: str, csr_pem: str, facts: HardwareFacts, agent_version: str
    ) -> Enrollment:
        try:
            token_id, secret = split_credential(credential)
        except InvalidInput:
            raise Unauthenticated("unknown enrollment token") from None
        now = self._clock_ms()
        with self._db.session() as s:
            token = s.get(EnrollmentTokenRow, token_id)
            if token is None or not secrets.compare_digest(token.secret_hash, hash_secret(secret)):
                raise Unauthenticated("unknown enrollment token")
            if token.used_ms is not None:
                raise Unauthenticated("enrollment token was already used")
            if token.expires_ms <= now:
                raise Unauthenticated("enrollment token has expired")
            row = s.get(DeviceRow, token.device_id)
            if row is None or row.state == "revoked":
                raise Unauthenticated("device was revoked")
            profile = row.requested_profile
            if profile == AUTO:
                profile = self._profiles.resolve(facts).name
            issued = self._ca.sign_device_csr(csr_pem, row.device_id)
            password = secrets.token_urlsafe(24)
            # Single use even under concurrent enrollments: only one UPDATE can match.
            claimed = s.execute(
                update(EnrollmentTokenRow)
                .where(EnrollmentTokenRow.token_id == token_id)
                .where(EnrollmentTokenRow.used_ms.is_(None))
                .values(used_ms=now)
            )
            if claimed.rowcount != 1:  # type: ignore[attr-defined]
                raise Unauthenticated("enrollment token was already used")
            row.profile = profile
            row.facts = dataclasses.asdict(facts)
            row.state = "enrolled"
            row.cert_fingerprint = issued.fingerprint
            row.mqtt_password_hash = self._hash_mqtt_password(password)
            row.enrolled_ms = now
            row.agent_version = agent_version[:64]
            device = _to_device(row)
        self._forget(device.device_id)
        log.info("enrolled device %s as profile %s", device.device_id, profile)
        announce(self.listeners, FleetEvent("device.enrolled", f"enrolled {device.name} as "
                 f"{profile}", device_id=device.device_id, data={"name": device.name,
                 "profile": profile, "agent_version": device.agent_version}))  # fmt: skip
        self._on_credentials_changed()
        return Enrollment(device, issued.pem, self._ca.certificate_pem, password)

    def authenticate(self, cert_fingerprint: str) -> Device:
        """The enrolled, unrevoked device holding this certificate (from the cache while its
        entry lives: every device call asks)."""
        if (cached := self._by_certificate.get(cert_fingerprint)) is not None:
            return cached
        with self._db.session() as s:
            row = s.scalar(select(DeviceRow).where(DeviceRow.cert_fingerprint == cert_fingerprint))
            if row is None:
                raise Unauthenticated("unknown device certificate")
            if row.state == "revoked":
                raise Unauthenticated(f"device {row.device_id} has been revoked")
            device = _to_device(row)
        self._by_certificate.put(cert_fingerprint, device)
        return device

    def record_presence(
        self, device_id: str, *, online: bool, unix_ms: int | None = None, agent_version: str = ""
    ) -> None:
        """A sign of life (or a last will). Revoked devices stay offline. ``unix_ms`` is the
        device's clock: never stored ahead of the controller's, or one message stamped far in
        the future would keep the device online through every presence sweep."""
        now = self._clock_ms()
        seen = min(unix_ms or now, now)
        waiting = self._presence.add(
            device_id, online=online, seen_ms=seen, agent_version=agent_version[:64]
        )
        if self.presence_flush_s <= 0 or waiting >= MAX_PENDING:
            self._presence.flush_before_read()

    def flush_presence(self) -> int:
        """Store the presence waiting in memory now (one batched UPDATE)."""
        return self._presence.flush()

    def run_presence_flusher(self, stopped: threading.Event) -> None:
        """Store waiting presence every ``presence_flush_s`` until ``stopped``, then once more."""
        self._presence.run(
            stopped, self.presence_flush_s or 1.0, lambda: log.exception("presence flush failed")
        )

    def _forget(self, device_id: str) -> None:
        self._by_certificate.discard_where(lambda d: d.device_id == device_id)

    def mqtt_password_hash(self, username: str) -> str | None:
        """For broker authentication: the password hash of an enrolled device, else None."""
        with self._db.session() as s:
            row = s.get(DeviceRow, username)
            if row is None or row.state != "enrolled":
                return None
            return row.mqtt_password_hash

    def mqtt_credentials(self) -> list[tuple[str, str]]:
        """(device_id, password hash) of every device allowed on the broker."""
        with self._db.session() as s:
            rows = s.execute(
                select(DeviceRow.device_id, DeviceRow.mqtt_password_hash).where(
                    DeviceRow.state == "enrolled", DeviceRow.mqtt_password_hash.is_not(None)
                )
            ).all()
        return [(device_id, str(pw)) for device_id, pw in rows]

    @staticmethod
    def _find(s: Session, name_or_id: str) -> DeviceRow:
        row = s.get(DeviceRow, name_or_id) or s.scalar(
            select(DeviceRow).where(DeviceRow.name == name_or_id)
        )
        if row is None:
            raise NotFound(f"no device named {name_or_id!r}")
        return row


def mqtt_topic_prefix(device_id: str) -> str:
    return topics.device_prefix(device_id)


def mark_stale_offline(db: Database, older_than_ms: int) -> int:
    """Devices silent since before ``older_than_ms`` are offline, last will or not."""
    with db.session() as s:
        result = s.execute(
            update(DeviceRow)
            .where(DeviceRow.online.is_(True), DeviceRow.last_seen_ms < older_than_ms)
            .values(online=False)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]
