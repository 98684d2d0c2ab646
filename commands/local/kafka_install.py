"""Fetch Apache Kafka's broker from Maven Central with the machine's Maven, once, into a cache.

The broker is plain Maven artifacts (`org.apache.kafka:kafka_2.13` and what it needs at run
time), named by the pom beside this module (commands/local/kafka/pom.xml, the one place
that says which version runs). `mvn dependency:copy-dependencies` copies every jar of its
run-time class path into a directory named after the version and a digest of the pom, so a
changed pom gets a new directory and an old one is never half-overwritten. The directory is
complete only once its `installed.json` exists (written last, after an atomic rename), so an
interrupted install is redone rather than trusted.

The cache lives outside the repository (`$POSTBACKS_CACHE_DIR`, else
`$XDG_CACHE_HOME/postback-pipeline`, else `~/.cache/postback-pipeline`): every clone on a
machine shares one copy, and `git clean` never removes it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

MIN_JAVA = 17
_POM_NS = {"m": "http://maven.apache.org/POM/4.0.0"}


class KafkaInstallError(RuntimeError):
    """Kafka cannot be installed or started here; the message names the command that failed."""


def pom_path() -> Path:
    return Path(str(files("commands.local").joinpath("kafka", "pom.xml")))


def log4j_config_path() -> Path:
    return Path(str(files("commands.local").joinpath("kafka", "log4j2.properties")))


def kafka_version() -> str:
    """The broker version the pom names (its `kafka.version` property)."""
    root = ET.parse(pom_path()).getroot()
    node = root.find("m:properties/m:kafka.version", _POM_NS)
    if node is None or not (node.text or "").strip():
        raise KafkaInstallError(f"{pom_path()} names no kafka.version property")
    return (node.text or "").strip()


def cache_root() -> Path:
    explicit = os.environ.get("POSTBACKS_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "postback-pipeline"


def install_dir() -> Path:
    digest = hashlib.sha256(pom_path().read_bytes()).hexdigest()[:10]
    return cache_root() / f"kafka-{kafka_version()}-{digest}"


@dataclass(frozen=True, slots=True)
class KafkaInstall:
    """A complete install: its class path directory and how it was fetched."""

    version: str
    libs: Path
    jars: int
    size_bytes: int
    fetch_seconds: float

    @property
    def classpath(self) -> str:
        return str(self.libs / "*")

    def describe(self) -> str:
        return (
            f"Apache Kafka {self.version}: {self.jars} jars, {self.size_bytes / 1e6:.1f} MB "
            f"(fetched in {self.fetch_seconds:.1f} s) in {self.libs}"
        )


def installed() -> KafkaInstall | None:
    """The cached install for the pom's version, or None if there is no complete one."""
    directory = install_dir()
    marker = directory / "installed.json"
    if not marker.is_file():
        return None
    facts = json.loads(marker.read_text())
    return KafkaInstall(
        version=facts["version"],
        libs=directory / "libs",
        jars=facts["jars"],
        size_bytes=facts["size_bytes"],
        fetch_seconds=facts["fetch_seconds"],
    )


def java_binary() -> str:
    """`$JAVA_HOME/bin/java`, else `java` on PATH; it must be Java 17 or newer (Kafka 4 needs it)."""
    home = os.environ.get("JAVA_HOME")
    candidate = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not candidate or not Path(candidate).exists():
        raise KafkaInstallError(
            "no Java found (JAVA_HOME unset and no `java` on PATH): Apache Kafka needs Java "
            f"{MIN_JAVA}+; install it (e.g. `apt-get install openjdk-17-jre-headless`)"
        )
    major = java_major(candidate)
    if major < MIN_JAVA:
        raise KafkaInstallError(f"{candidate} is Java {major}; Apache Kafka needs Java {MIN_JAVA}+")
    return candidate


def java_major(java: str) -> int:
    try:
        done = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise KafkaInstallError(f"`{java} -version` failed: {exc}") from exc
    return parse_java_major(done.stderr + done.stdout)


def parse_java_major(version_output: str) -> int:
    """The major version from `java -version` output ("1.8.0_392" is 8, "17.0.15" is 17)."""
    found = re.search(r'version "(\d+)(?:\.(\d+))?', version_output)
    if not found:
        raise KafkaInstallError(f"cannot read a Java version from: {version_output.strip()[:200]!r}")
    major = int(found.group(1))
    return int(found.group(2) or 0) if major == 1 else major


def install(say: Callable[[str], None] = print) -> KafkaInstall:
    """Resolve the pom into the cache (no-op when already there); returns the install."""
    done = installed()
    if done is not None:
        return done
    java_binary()  # fail on a missing/old Java before downloading anything
    mvn = shutil.which("mvn")
    if mvn is None:
        raise KafkaInstallError(
            "no `mvn` on PATH: the project fetches Apache Kafka from Maven Central with Maven 3 "
            "(e.g. `apt-get install maven`)"
        )
    target = install_dir()
    target.parent.mkdir(parents=True, exist_ok=True)
    version = kafka_version()
    say(f"fetching Apache Kafka {version} from Maven Central into {target} ...")
    started = time.monotonic()
    partial = Path(tempfile.mkdtemp(dir=target.parent, prefix=".partial-"))
    try:
        libs = partial / "libs"
        command = [
            mvn,
            "-B",
            "-q",
            "-f",
            str(pom_path()),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={libs}",
        ]
        try:
            run = subprocess.run(command, capture_output=True, text=True, timeout=1200)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise KafkaInstallError(f"`{' '.join(command)}` failed: {exc}") from exc
        if run.returncode != 0 or not any(libs.glob("kafka_2.13-*.jar")):
            tail = "\n".join((run.stdout + run.stderr).strip().splitlines()[-25:])
            raise KafkaInstallError(
                f"`{' '.join(command)}` exited {run.returncode} (is Maven Central reachable?):\n{tail}"
            )
        jars = sorted(libs.glob("*.jar"))
        facts = {
            "version": version,
            "jars": len(jars),
            "size_bytes": sum(j.stat().st_size for j in jars),
            "fetch_seconds": round(time.monotonic() - started, 1),
        }
        if target.exists():  # an interrupted earlier install: no marker, so not trusted
            shutil.rmtree(target)
        partial.rename(target)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    (target / "installed.json").write_text(json.dumps(facts, indent=2) + "\n")
    result = installed()
    assert result is not None
    say(result.describe())
    return result
