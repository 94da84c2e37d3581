"""Story 1: devices register, enroll with single-use tokens, run with mutual TLS, get revoked."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from controller.demo.context import DemoFailed, DemoRun, wait_for

# Simulated hardware, so one machine shows how profiles resolve for different devices.
DEMO_DEVICES: list[tuple[str, dict[str, str], dict[str, object] | None]] = [
    ("cam-1", {"site": "lab"}, None),
    (
        "cam-2",
        {"site": "lab"},
        {
            "arch": "aarch64",
            "cpu_flags": ["asimd", "asimddp", "neon"],
            "cpu_model": "Cortex-A76 (simulated)",
        },
    ),
    (
        "cam-3",
        {"site": "depot"},
        {"arch": "aarch64", "cpu_flags": ["asimd", "neon"], "cpu_model": "Cortex-A72 (simulated)"},
    ),
]


def enroll_device(
    demo: DemoRun, name: str, labels: dict[str, str], facts: dict[str, object] | None = None
) -> None:
    label_args = [a for k, v in labels.items() for a in ("--label", f"{k}={v}")]
    reg = demo.edgefleet_json("device", "register", name, "--profile", "auto", *label_args)
    demo.last_token = reg["enrollment_token"]
    demo.say(f"token for {name}: {reg['enrollment_token'][:20]}... (single use)")
    agent_dir = demo.root / "agents" / name
    extra: list[str] = []
    if facts:
        facts_file = demo.root / "agents" / f"{name}.facts.json"
        facts_file.parent.mkdir(parents=True, exist_ok=True)
        facts_file.write_text(json.dumps(facts))
        extra = ["--facts", str(facts_file)]
    result = subprocess.run(
        demo.agent_cmd(
            "enroll",
            "--controller",
            demo.address,
            "--token",
            reg["enrollment_token"],
            "--data-dir",
            str(agent_dir),
            *extra,
        ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise DemoFailed(f"enrolling {name} failed: {result.stderr.strip()}")
    demo.say(result.stdout.strip())
    demo.agent_dirs[name] = agent_dir


def story(demo: DemoRun, agents: int = 3) -> None:
    names = []
    for i in range(agents):
        name, labels, facts = DEMO_DEVICES[i % len(DEMO_DEVICES)]
        name = name if i < len(DEMO_DEVICES) else f"cam-{i + 1}"
        demo.step(f"register {name} and enroll its agent")
        enroll_device(demo, name, labels, facts)
        demo.start_agent(name)
        names.append(name)

    demo.step("the agents run with mutual TLS and report presence over MQTT")

    def all_online() -> bool:
        listed = demo.edgefleet_json("device", "list")
        return sum(d["online"] for d in listed) == len(names)

    online = wait_for(all_online, 20)
    demo.say(demo.edgefleet("device", "list"))
    if not online:
        raise DemoFailed("not every agent came online in 20 s")

    demo.step("a used token cannot enroll a second device")
    retired = "cam-retired"
    enroll_device(demo, retired, {"site": "depot"})
    token = demo.last_token
    again = subprocess.run(
        demo.agent_cmd(
            "enroll",
            "--controller",
            demo.address,
            "--token",
            token,
            "--data-dir",
            str(demo.root / "agents" / "intruder"),
        ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    demo.say(f"second use of {retired}'s token: exit {again.returncode}: {again.stderr.strip()}")
    if again.returncode == 0:
        raise DemoFailed("a token must work once and only once")

    demo.step(f"revoke {retired}: its next call is refused and it goes offline")
    proc = demo.start_agent(retired)
    if not wait_for(lambda: _online(demo, retired), 20):
        raise DemoFailed(f"{retired} did not come online")
    demo.say(demo.edgefleet("device", "revoke", retired).strip())
    if not wait_for(lambda: proc.poll() is not None, 10):
        raise DemoFailed(f"the agent of {retired} kept running after revocation")
    demo.say(f"agent of {retired} exited with code {proc.returncode} (refused)")
    demo.say(_broker_refuses(demo.agent_dirs.pop(retired)))
    demo.say(demo.edgefleet("device", "list"))


def _online(demo: DemoRun, name: str) -> bool:
    return any(d["name"] == name and d["online"] for d in demo.edgefleet_json("device", "list"))


def _broker_refuses(agent_dir: Path) -> str:
    """Log in to the broker with the revoked device's own MQTT credentials: refused."""
    import paho.mqtt.client as mqtt

    from edgefleet.mqtt import new_client, parse_broker_url

    identity = json.loads((agent_dir / "identity.json").read_text())
    address = parse_broker_url(identity["mqtt_url"])
    client = new_client(
        identity["device_id"], identity["mqtt_username"], identity["mqtt_password"], tls=False
    )
    try:
        code = client.connect(address.host, address.port, keepalive=10)
        if code == mqtt.MQTT_ERR_SUCCESS:
            for _ in range(30):  # up to 3 s for the CONNACK
                client.loop(timeout=0.1)
                if client.is_connected():
                    raise DemoFailed("the broker let a revoked device's credentials in")
    except OSError as exc:
        return f"the broker is unreachable for the revoked device: {exc}"
    finally:
        client.disconnect()
    return "the broker refuses the revoked device's MQTT credentials too (not authorized)"
