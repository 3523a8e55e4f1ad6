"""Build the operator's image from the project's own Dockerfile, without Docker.

``make image`` (``python -m raidiam_devenv.image``) writes
``dist/raidiam-token-operator-<version>.oci.tar``, an OCI archive that the dev
node imports with ``ctr -n k8s.io images import``.

* The builder is buildah (Debian), which reads the same Dockerfile as
  ``docker build`` and needs no daemon.
* No registry can be reached, so the Dockerfile's default base
  (``python:*-slim``) cannot be pulled.  The base is assembled from Debian
  packages instead: ``debootstrap --variant=minbase`` plus ``python3`` and
  ``python3-venv``, committed to buildah's local storage once (cached by suite
  and package list) and passed through the ``PYTHON_IMAGE`` build argument.
* buildah keeps its layers (``--layers``), so a rebuild after a change to
  ``operator/`` redoes only the layers from that ``COPY`` on.

``write_single_binary_image`` writes a one-binary image (the node's pause
container) as an OCI archive directly, with no builder.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import ssl
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from raidiam_devenv.binaries import BuildError, build_log_path, cache_root, file_lock, run_logged
from raidiam_devenv.system_packages import IMAGE_BUILD_PACKAGES, ensure_debian_packages

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "charts" / "raidiam-token-operator"
DIST_DIR = REPO_ROOT / "dist"

DEBIAN_SUITE = "bookworm"  # python3 is 3.11, like the Dockerfile's default base
DEBIAN_MIRROR = "http://deb.debian.org/debian"
BASE_PACKAGES = ("python3", "python3-venv")

# The chart's default image (repository raidiam-token-operator, tag = appVersion), as the
# container runtime spells it after normalising the short name.
IMAGE_REPOSITORY = "docker.io/library/raidiam-token-operator"


@dataclass(frozen=True)
class BuiltImage:
    reference: str  # docker.io/library/raidiam-token-operator:<version>
    archive: Path  # the OCI archive under dist/
    seconds: float


def app_version() -> str:
    chart = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    return str(chart["appVersion"])


def image_reference() -> str:
    return f"{IMAGE_REPOSITORY}:{app_version()}"


def base_image_reference() -> str:
    digest = hashlib.sha256(f"{DEBIAN_SUITE} {' '.join(BASE_PACKAGES)}".encode()).hexdigest()
    return f"localhost/raidiam-devenv/debian-python3:{DEBIAN_SUITE}-{digest[:12]}"


def _progress(message: str) -> None:
    print(f"[raidiam-devenv] {message}", file=sys.stderr, flush=True)


def _buildah_has_image(reference: str) -> bool:
    result = subprocess.run(
        ["buildah", "inspect", "--type", "image", reference],
        capture_output=True,
        check=False,
    )
    return result.returncode == 0


def ensure_base_image() -> str:
    """The Debian ``python3`` base in buildah's storage, assembled on first use."""
    reference = base_image_reference()
    if _buildah_has_image(reference):
        return reference
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with file_lock(root / ".image.lock"):
        if _buildah_has_image(reference):
            return reference
        log_path = build_log_path(root, "image-base")
        started = time.monotonic()
        _progress(
            f"assembling the image base from Debian {DEBIAN_SUITE} packages "
            f"(debootstrap minbase + {', '.join(BASE_PACKAGES)}; ~2 min once); log: {log_path}"
        )
        work = Path(tempfile.mkdtemp(prefix=".image-base.", dir=root))
        rootfs = work / "rootfs"
        try:
            run_logged(
                [
                    "debootstrap",
                    "--variant=minbase",
                    f"--include={','.join(BASE_PACKAGES)}",
                    DEBIAN_SUITE,
                    rootfs,
                    DEBIAN_MIRROR,
                ],
                cwd=work,
                env=os.environ,
                log_path=log_path,
                what="debootstrap",
            )
            # What an image base does not carry: downloaded packages and package lists.
            for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
                for path in (rootfs / leftover).glob("*"):
                    if path.is_file():
                        path.unlink()
            _commit_rootfs(rootfs, reference, log_path)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        _progress(f"image base {reference} ready in {time.monotonic() - started:.0f}s")
    return reference


def _commit_rootfs(rootfs: Path, reference: str, log_path: Path) -> None:
    # `buildah from scratch` + a tar of the root filesystem = a one-layer image.
    container = subprocess.run(
        ["buildah", "from", "scratch"], capture_output=True, text=True, check=True
    ).stdout.strip()
    try:
        archive = rootfs.parent / "rootfs.tar"
        run_logged(
            ["tar", "--numeric-owner", "-C", rootfs, "-cf", archive, "."],
            cwd=rootfs.parent,
            env=os.environ,
            log_path=log_path,
            what="tar rootfs",
        )
        run_logged(
            ["buildah", "add", container, archive, "/"],
            cwd=rootfs.parent,
            env=os.environ,
            log_path=log_path,
            what="buildah add",
        )
        run_logged(
            [
                "buildah",
                "config",
                "--env",
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "--env",
                "LANG=C.UTF-8",
                "--cmd",
                "python3",
                container,
            ],
            cwd=rootfs.parent,
            env=os.environ,
            log_path=log_path,
            what="buildah config",
        )
        run_logged(
            ["buildah", "commit", "--rm", container, reference],
            cwd=rootfs.parent,
            env=os.environ,
            log_path=log_path,
            what="buildah commit",
        )
    except BaseException:
        subprocess.run(["buildah", "rm", container], capture_output=True, check=False)
        raise


def _host_trust_volumes(root: Path) -> list[str]:
    """Let pip in the build trust what this machine trusts, without baking it into the image.

    Where HTTPS goes through an inspecting proxy, the proxy's CA is in the host's trust store
    but not in pip's own bundle. ``--volume`` mounts exist only while a RUN step runs, so
    neither file ends up in a layer.
    """
    cafile = os.environ.get("SSL_CERT_FILE") or ssl.get_default_verify_paths().openssl_cafile
    if not cafile or not Path(cafile).is_file():
        return []
    pip_conf = root / "image-build-pip.conf"
    pip_conf.write_text("[global]\ncert = /run/raidiam-devenv-ca.crt\n")
    return [
        "--volume",
        f"{Path(cafile).resolve()}:/run/raidiam-devenv-ca.crt:ro",
        "--volume",
        f"{pip_conf}:/etc/pip.conf:ro",
    ]


def build_image(dist_dir: Path = DIST_DIR) -> BuiltImage:
    """Build the Dockerfile on the Debian base and write it as an OCI archive under ``dist/``."""
    ensure_debian_packages(IMAGE_BUILD_PACKAGES)
    started = time.monotonic()
    base = ensure_base_image()
    reference = image_reference()
    root = cache_root()
    log_path = build_log_path(root, "image")
    _progress(f"building {reference} from the Dockerfile with buildah; log: {log_path}")
    run_logged(
        [
            "buildah",
            "build",
            "--layers",
            # pip reaches PyPI from the build stage; buildah's own network needs configuration.
            "--network",
            "host",
            *_host_trust_volumes(root),
            "--build-arg",
            f"PYTHON_IMAGE={base}",
            "--tag",
            reference,
            "--file",
            REPO_ROOT / "Dockerfile",
            REPO_ROOT,
        ],
        cwd=REPO_ROOT,
        env=os.environ,
        log_path=log_path,
        what="buildah build",
    )
    dist_dir.mkdir(parents=True, exist_ok=True)
    archive = dist_dir / f"raidiam-token-operator-{app_version()}.oci.tar"
    partial = archive.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    run_logged(
        ["buildah", "push", "--quiet", reference, f"oci-archive:{partial}:{reference}"],
        cwd=REPO_ROOT,
        env=os.environ,
        log_path=log_path,
        what="buildah push",
    )
    partial.replace(archive)
    return BuiltImage(reference=reference, archive=archive, seconds=time.monotonic() - started)


# --------------------------------------------------------------------------- #
# One-binary images, written as OCI archives without a builder (the node's pause image:
# its sandbox container, built from source as no registry can be reached)
# --------------------------------------------------------------------------- #


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _tar_member(tar: tarfile.TarFile, name: str, data: bytes, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    tar.addfile(info, io.BytesIO(data))


def write_single_binary_image(binary: Path, reference: str, archive: Path) -> Path:
    """An OCI archive of a one-layer image holding ``/<binary name>`` as its entrypoint."""
    layer_buffer = io.BytesIO()
    with tarfile.open(fileobj=layer_buffer, mode="w", format=tarfile.PAX_FORMAT) as layer_tar:
        _tar_member(layer_tar, binary.name, binary.read_bytes(), 0o755)
    layer = layer_buffer.getvalue()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Entrypoint": [f"/{binary.name}"], "User": "65535:65535"},
            "rootfs": {"type": "layers", "diff_ids": [_sha256(layer)]},
        }
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": _sha256(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": _sha256(layer),
                    "size": len(layer),
                }
            ],
        }
    ).encode()
    index = json.dumps(
        {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": _sha256(manifest),
                    "size": len(manifest),
                    "annotations": {
                        "io.containerd.image.name": reference,
                        "org.opencontainers.image.ref.name": reference.rsplit(":", 1)[1],
                    },
                }
            ],
        }
    ).encode()
    with tarfile.open(archive, mode="w") as tar:
        _tar_member(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}', 0o644)
        _tar_member(tar, "index.json", index, 0o644)
        for blob in (layer, config, manifest):
            _tar_member(tar, f"blobs/sha256/{_sha256(blob).split(':')[1]}", blob, 0o644)
    return archive


def main() -> int:
    try:
        image = build_image()
    except BuildError as error:
        print(error, file=sys.stderr)
        return 1
    print(image.archive)
    _progress(f"{image.reference} -> {image.archive} in {image.seconds:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
