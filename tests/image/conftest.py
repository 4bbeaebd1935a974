"""Fixtures of the image tests: a real Docker engine, the base images, the animegan image built with BuildKit.

- ``engine``: a docker client with BuildKit built in (Debian's docker.io client, /usr/bin/docker:
  a newer client without its buildx plugin cannot build with BuildKit) against a running engine.
  When none answers, ``dockerd`` is started here (log in test-artifacts/image/) and stopped after
  the session; an engine that was already running is left as it was.
- ``base_images``: the python, redis and prometheus images the Dockerfile and docker-compose.yml
  name, when present or pulled; otherwise stand-ins (tests/image/standins/) built on a Debian 12
  minbase made with debootstrap from the host's apt mirror. The minbase and the stand-ins are kept
  as tarballs in ~/.cache/animegan-image ($XDG_CACHE_HOME), named by a digest of their recipes, so
  a later run, or a fresh engine, loads them in seconds.
- ``pip_options``: ``docker run`` options with which pip in a container of a base image trusts what
  the host trusts (its CA bundle) and keeps its downloads in the cache directory below.
- ``image``: the animegan image built from this tree with BuildKit. Offline as to weights
  (ANIMEGAN_PREFETCH_STYLES empty: the stack mounts ../shared/weights); the host's CA bundle is
  the build's ``ca-bundle`` secret, so pip trusts what the host trusts (an intercepting proxy).

Test modules use these fixtures rather than importing from here, so any pytest import mode works.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "image"
STANDINS = Path(__file__).resolve().parent / "standins"
SUITE = "bookworm"  # Debian 12, the release of python:3.11-slim's stand-in
IMAGE_TAG = "animegan:image-test"
# Written into the minbase, as in Debian's official slim images: no service starts inside a build
# (invoke-rc.d asks policy-rc.d), and packages unpack no documentation, manuals or translations.
MINBASE_FILES = {
    "usr/sbin/policy-rc.d": "#!/bin/sh\nexit 101\n",
    "etc/dpkg/dpkg.cfg.d/slim": (
        "path-exclude /usr/share/doc/*\npath-include /usr/share/doc/*/copyright\n"
        "path-exclude /usr/share/man/*\npath-exclude /usr/share/info/*\npath-exclude /usr/share/locale/*\n"
    ),
}


class Engine:
    """A docker client and the engine it talks to."""

    def __init__(self, client: str) -> None:
        self.client = client

    def run(
        self, *args: str, timeout: float = 600, check: bool = True, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [self.client, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "DOCKER_BUILDKIT": "1", **(env or {})},
            check=False,
        )
        if check:
            assert done.returncode == 0, (
                f"docker {' '.join(args)} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
            )
        return done

    def answers(self) -> bool:
        return self.run("info", "--format", "{{.ServerVersion}}", timeout=30, check=False).returncode == 0

    def has_image(self, name: str) -> bool:
        return self.run("image", "inspect", name, check=False).returncode == 0


def docker_client() -> str:
    for candidate in ("/usr/bin/docker", shutil.which("docker")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise AssertionError("no docker client: run `make image-deps` (scripts/setup.sh image installs docker.io)")


@pytest.fixture(scope="session")
def engine() -> Iterator[Engine]:
    engine = Engine(docker_client())
    daemon = None
    if not engine.answers():
        dockerd = shutil.which("dockerd") or "/usr/sbin/dockerd"
        assert os.access(dockerd, os.X_OK), "no dockerd: run `make image-deps` (scripts/setup.sh image)"
        assert os.geteuid() == 0, "no Docker engine answers, and starting dockerd needs root"
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        with (ARTIFACTS / "dockerd.log").open("ab") as log:
            daemon = subprocess.Popen([dockerd], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 90
        while not engine.answers():
            assert daemon.poll() is None, f"dockerd exited with {daemon.returncode}; see {ARTIFACTS / 'dockerd.log'}"
            assert time.monotonic() < deadline, f"dockerd did not answer in 90 s; see {ARTIFACTS / 'dockerd.log'}"
            time.sleep(0.5)
    try:
        yield engine
    finally:
        if daemon is not None:
            daemon.terminate()  # dockerd stops its containers and its containerd, then exits
            try:
                daemon.wait(120)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait(10)


# -- Base images ---------------------------------------------------------------------------------


def named_bases() -> dict[str, str]:
    """The images the Dockerfile (PYTHON_IMAGE) and docker-compose.yml name by default."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    compose = (ROOT / "docker-compose.yml").read_text()
    found = {
        "python": re.search(r"^ARG PYTHON_IMAGE=(\S+)$", dockerfile, re.MULTILINE),
        "redis": re.search(r"\$\{REDIS_IMAGE:-([^}]+)\}", compose),
        "prometheus": re.search(r"\$\{PROMETHEUS_IMAGE:-([^}]+)\}", compose),
    }
    assert all(found.values()), found
    return {role: match.group(1) for role, match in found.items() if match}


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    path = base / "animegan-image"
    path.mkdir(parents=True, exist_ok=True)
    return path


def debian_mirror(suite: str = SUITE, apt: Path = Path("/etc/apt")) -> str:
    """The host's Debian mirror for ``suite``: deb822 .sources files first, then sources.list lines."""
    for path in sorted((apt / "sources.list.d").glob("*.sources")):
        for stanza in path.read_text().split("\n\n"):
            fields = {
                key.strip(): value.strip()
                for key, _, value in (line.partition(":") for line in stanza.splitlines())
                if key and not key.startswith("#")
            }
            if "deb" in fields.get("Types", "").split() and suite in fields.get("Suites", "").split():
                return fields["URIs"].split()[0]
    for path in [apt / "sources.list", *sorted((apt / "sources.list.d").glob("*.list"))]:
        for line in path.read_text().splitlines() if path.is_file() else []:
            match = re.match(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", line)
            if match and match.group(2) == suite:
                return match.group(1)
    return "http://deb.debian.org/debian"


def digest(*parts: str | bytes) -> str:
    hashed = hashlib.sha256()
    for part in parts:
        hashed.update(part.encode() if isinstance(part, str) else part)
        hashed.update(b"\0")
    return hashed.hexdigest()[:12]


def minbase_key(mirror: str) -> str:
    return digest(mirror, SUITE, *(f"{path}={text}" for path, text in sorted(MINBASE_FILES.items())))


def minbase_archive(cache: Path, mirror: str) -> Path:
    return cache / f"debian-{SUITE}-minbase-{minbase_key(mirror)}.tar"


def minbase(engine: Engine, cache: Path, mirror: str) -> str:
    """Debian 12 minbase from ``mirror`` as an image: debootstrap once, the root file system kept as a tarball."""
    tag = f"animegan-standin/debian:{SUITE}-minbase-{minbase_key(mirror)}"
    if engine.has_image(tag):
        return tag
    rootfs = minbase_archive(cache, mirror)
    if not rootfs.is_file():
        debootstrap = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
        assert os.access(debootstrap, os.X_OK), "no debootstrap: run `make image-deps` (scripts/setup.sh image)"
        with tempfile.TemporaryDirectory(dir=cache) as scratch:
            root = Path(scratch) / "root"
            command = [debootstrap, "--variant=minbase", SUITE, str(root), mirror]
            done = subprocess.run(command, capture_output=True, text=True, timeout=1200, check=False)
            assert done.returncode == 0, f"debootstrap failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            for name, text in MINBASE_FILES.items():
                (root / name).parent.mkdir(parents=True, exist_ok=True)
                (root / name).write_text(text)
                (root / name).chmod(0o755 if "/sbin/" in name else 0o644)
            for leftovers in (root / "var" / "cache" / "apt" / "archives", root / "var" / "lib" / "apt" / "lists"):
                for entry in leftovers.glob("*"):
                    if entry.is_file():
                        entry.unlink()
            partial = Path(scratch) / "rootfs.tar"
            subprocess.run(["tar", "-C", str(root), "--numeric-owner", "-cf", str(partial), "."], check=True)
            shutil.move(partial, rootfs)
    engine.run("import", str(rootfs), tag)
    return tag


def standins(engine: Engine, cache: Path) -> dict[str, str]:
    """Stand-ins of the base images, by role: loaded from the cache, else built (and then cached)."""
    mirror = debian_mirror()
    recipes = sorted(STANDINS.glob("*.Dockerfile"))
    key = digest(minbase_key(mirror), *(recipe.read_bytes() for recipe in recipes))
    tags = {recipe.stem: f"animegan-standin/{recipe.stem}:{key}" for recipe in recipes}
    archive = cache / f"standins-{key}.tar"
    if not all(engine.has_image(tag) for tag in tags.values()) and archive.is_file():
        engine.run("load", "--input", str(archive))
    if not all(engine.has_image(tag) for tag in tags.values()):
        debian = minbase(engine, cache, mirror)
        for role, tag in tags.items():
            recipe = str(STANDINS / f"{role}.Dockerfile")
            engine.run("build", "--build-arg", f"DEBIAN_IMAGE={debian}", "--tag", tag, "--file", recipe, str(STANDINS))
    if not archive.is_file():
        partial = archive.with_suffix(".part")
        engine.run("save", "--output", str(partial), *tags.values())
        partial.replace(archive)
        keep = {archive, minbase_archive(cache, mirror)}
        for stale in [*cache.glob("standins-*.tar"), *cache.glob("debian-*-minbase-*.tar")]:
            if stale not in keep:
                stale.unlink()  # made from other recipes or another mirror: never loaded again
    return tags


@pytest.fixture(scope="session")
def base_images(engine: Engine) -> dict[str, str]:
    """Role (python, redis, prometheus) -> image: the named one when present or pullable, else its stand-in."""
    found = {}
    for role, name in named_bases().items():
        if engine.has_image(name) or engine.run("pull", name, timeout=120, check=False).returncode == 0:
            found[role] = name
    if len(found) < len(named_bases()):
        found = {**standins(engine, cache_dir()), **found}
    return found


# -- The image -----------------------------------------------------------------------------------


def ca_bundle() -> Path | None:
    """The CA bundle this host trusts (with an intercepting proxy's CA, where there is one)."""
    for candidate in (
        os.environ.get("SSL_CERT_FILE"),
        os.environ.get("PIP_CERT"),
        "/etc/ssl/certs/ca-certificates.crt",
    ):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def build_args(base_images: Mapping[str, str]) -> list[str]:
    """`docker build` options of the image tests: the python base, no weights, the host's CA bundle."""
    args = ["--build-arg", f"PYTHON_IMAGE={base_images['python']}", "--build-arg", "ANIMEGAN_PREFETCH_STYLES="]
    bundle = ca_bundle()
    return [*args, "--secret", f"id=ca-bundle,src={bundle}"] if bundle else args


@pytest.fixture(scope="session")
def image(engine: Engine, base_images: dict[str, str]) -> str:
    """The animegan image, built from this tree with BuildKit (its layer cache makes a rebuild quick)."""
    done = engine.run(
        "build", "--progress=plain", *build_args(base_images), "--tag", IMAGE_TAG, str(ROOT), timeout=1800, check=False
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "build.log").write_text(done.stdout + done.stderr)
    assert done.returncode == 0, f"the image build failed; see {ARTIFACTS / 'build.log'}:\n{done.stderr[-4000:]}"
    return IMAGE_TAG


@pytest.fixture(scope="session")
def image_build_args(base_images: dict[str, str]) -> list[str]:
    """The `docker build` options the ``image`` fixture uses (python base, no weights, CA secret)."""
    return build_args(base_images)


@pytest.fixture(scope="session")
def pip_options() -> list[str]:
    """`docker run` options for pip in a container: the host's CA bundle, a download cache kept between runs."""
    downloads = cache_dir() / "pip"
    downloads.mkdir(exist_ok=True)
    options = ["--volume", f"{downloads}:/root/.cache/pip", "--env", "PIP_DISABLE_PIP_VERSION_CHECK=1"]
    bundle = ca_bundle()
    return (
        [*options, "--volume", f"{bundle}:/etc/animegan-ca.crt:ro", "--env", "PIP_CERT=/etc/animegan-ca.crt"]
        if bundle
        else options
    )
