from pathlib import Path

import pytest

from edgefleet.errors import InvalidInput, NotFound
from edgefleet.hardware import HardwareFacts
from edgefleet.profiles import ProfileCatalogue


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        (HardwareFacts(arch="x86_64", cpu_flags=("avx2", "avx512_vnni")), "x86-64-vnni"),
        (HardwareFacts(arch="x86_64", cpu_flags=("avx2", "avx_vnni")), "x86-64-vnni"),
        (HardwareFacts(arch="x86_64", cpu_flags=("avx2",)), "x86-64-avx2"),
        (HardwareFacts(arch="x86_64", cpu_flags=("sse4_2",)), "generic-cpu"),
        (HardwareFacts(arch="aarch64", cpu_flags=("neon", "asimddp")), "arm64-dotprod"),
        (HardwareFacts(arch="aarch64", cpu_flags=("neon",)), "arm64-a72"),
        (HardwareFacts(arch="aarch64", accelerators=("nvidia-gpu",)), "nvidia-jetson"),
        (HardwareFacts(arch="aarch64", accelerators=("npu",), runtimes=("litert",)), "int8-npu"),
    ],
)
def test_resolve(facts: HardwareFacts, expected: str) -> None:
    assert ProfileCatalogue.load().resolve(facts).name == expected


def test_user_profiles_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(
        '[profiles.my-cam]\narch = "aarch64"\nrequires_flags = ["asimddp", "i8mm"]\n'
        'runtimes = ["litert"]\nprecisions = ["int8"]\nthreads = 4\n'
    )
    catalogue = ProfileCatalogue.load(path)
    profile = catalogue.get("my-cam")
    assert profile.threads == 4 and not profile.builtin and catalogue.get("int8-npu").builtin
    facts = HardwareFacts(arch="aarch64", cpu_flags=("asimddp", "i8mm"), runtimes=("litert",))
    assert catalogue.resolve(facts).name == "my-cam"


@pytest.mark.parametrize(
    "text",
    ["[profiles.x]\nruntimes = ['tensorflow']\n", "[profiles.x]\nthreads = 'many'\n", "not toml ["],
)
def test_bad_user_profiles(tmp_path: Path, text: str) -> None:
    path = tmp_path / "p.toml"
    path.write_text(text)
    with pytest.raises(InvalidInput):
        ProfileCatalogue.load(path)


def test_unknown_profile_names_the_known_ones() -> None:
    with pytest.raises(NotFound, match="x86-64-vnni"):
        ProfileCatalogue.load().check_requested("nope")
    ProfileCatalogue.load().check_requested("auto")


def test_agent_threads_come_from_its_builtin_profile() -> None:
    from edgefleet.profiles import builtin_threads

    assert builtin_threads("arm64-a72") == 4 and builtin_threads("int8-npu") == 1
    assert builtin_threads("someone-elses-profile") is None
