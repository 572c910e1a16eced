"""The model registry: every model version the line has had, and which one is live.

    <data_dir>/models/<version>/   one verified ModelPackage per version (and its cache/ of exports)
    <data_dir>/models/ACTIVE       the live version's name (replaced atomically)
    <data_dir>/models/HISTORY.json the versions activated so far, oldest first

Registration records a digest of the manifest in the copied package (registered.json,
see engines/package.py); every later load checks it, so a package edited by hand (a
threshold raised to 99) is listed as `modified` and refused, naming what differs.
Workers poll ACTIVE (mtime and content) to switch models without a restart, so ACTIVE
only ever names a package that verified when it was activated. `resolve` is the one way
from what a user or config.yaml names ("active", a version, a folder) to a package; an
empty registry's active model is the one shipped in the repository, registered the first
time anything asks (`edge run`, `edge model list`, `edge detect` alike). `rollback` walks back
through HISTORY rather than following `parent`, because a rollback must return to what
actually ran before, which is not always the parent (a forced or manual activation).
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from engines.errors import EngineError
from engines.package import MANIFEST, ModelModified, ModelPackage, check_version_name
from storage.files import atomic_write

log = logging.getLogger(__name__)

ACTIVE = "ACTIVE"
HISTORY = "HISTORY.json"
REMOVING = ".removing."  # a version being deleted (hidden from versions())
# The model shipped in the repository: trained on synthetic containers only.
SHIPPED = Path(__file__).resolve().parent.parent / "models"
DEFAULT_MODEL = "rtvp-n-synth"


class Registry:
    def __init__(self, data_dir: str | Path, shipped: Path | None = SHIPPED / DEFAULT_MODEL) -> None:
        """`shipped`: the package an empty registry starts with (None: none)."""
        self.root = Path(data_dir) / "models"
        self.shipped = shipped

    # -- reading -----------------------------------------------------------------
    def versions(self) -> list[str]:
        """Version names, oldest first (by the manifest's `created`, then name)."""
        if not self.root.is_dir():
            return []
        found = []
        for folder in self.root.iterdir():
            if folder.is_dir() and not folder.name.startswith(".") and (folder / MANIFEST).is_file():
                try:
                    created = json.loads((folder / MANIFEST).read_text()).get("created", "")
                except (OSError, json.JSONDecodeError):
                    created = ""
                found.append((created, folder.name))
        return [name for _, name in sorted(found)]

    def list(self) -> list[dict]:
        """One row per version: the manifest's facts plus whether its files verify."""
        self.ensure_default()
        active = self.active_version()
        rows = []
        for name in self.versions():
            row = {"version": name, "active": name == active}
            try:
                package = ModelPackage.load(self.root / name, verify=False)
                package.verify(registered=True)
                row["status"] = "ok"
            except ModelModified as exc:
                row["status"] = f"modified: {exc.what}"
                package = None
            except EngineError as exc:
                row["status"] = f"refused: {exc}"
                package = None
            if package is not None or (self.root / name / MANIFEST).is_file():
                manifest = package.manifest if package else self._raw_manifest(name)
                for key in ("parent", "created", "data", "metrics", "vocabulary"):
                    row[key] = manifest.get(key)
            rows.append(row)
        return rows

    def _raw_manifest(self, name: str) -> dict:
        try:
            return json.loads((self.root / name / MANIFEST).read_text())
        except (OSError, json.JSONDecodeError):
            return {}

    def get(self, version: str) -> ModelPackage:
        """A registered version, verified against its files and its registration digest
        (a tampered or modified package raises EngineError naming the version and what differs)."""
        folder = self._folder(version)
        package = ModelPackage.load(folder, registered=True)
        if package.version != version:
            raise ModelModified(version, f"its manifest names version {package.version!r}")
        return package

    def _folder(self, version: str) -> Path:
        """A registered version's folder, or EngineError naming the versions there are."""
        folder = self.root / check_version_name(version)
        if not (folder / MANIFEST).is_file():
            known = ", ".join(self.versions()) or "none"
            raise EngineError(f"model version {version!r} is not in the registry {self.root} "
                              f"(known: {known})")
        return folder

    def resolve(self, model: str | Path) -> ModelPackage:
        """`active`, a registered version name, or a package folder, verified."""
        if str(model) == "active":
            return self.active()
        if Path(model).is_dir():
            return ModelPackage.load(model)
        return self.get(str(model))  # verified against its registration digest

    def active_version(self) -> str | None:
        try:
            return (self.root / ACTIVE).read_text().strip() or None
        except FileNotFoundError:
            return None

    def active(self) -> ModelPackage:
        self.ensure_default()
        version = self.active_version()
        if version is None:
            raise EngineError(f"no active model in {self.root}; register one with `edge train` "
                              "or `edge model activate VERSION`")
        return self.get(version)

    def history(self) -> list[str]:
        try:
            return list(json.loads((self.root / HISTORY).read_text()))
        except FileNotFoundError:
            return []
        except (OSError, json.JSONDecodeError) as exc:
            raise EngineError(f"{self.root / HISTORY}: unreadable ({exc}); delete it to start "
                              "a new activation history") from None

    # -- changing ----------------------------------------------------------------
    def register(self, package_dir: str | Path) -> ModelPackage:
        """Copy a package into the registry after verifying it; its version names the folder."""
        source = ModelPackage.load(package_dir)  # refuses a corrupt or tampered package
        target = self.root / source.version
        if target.exists():
            raise EngineError(f"model version {source.version!r} is already registered "
                              f"({target}); give the new model another version name")
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{source.version}.", dir=self.root))
        try:
            for name in [MANIFEST, *source.manifest["files"]]:
                shutil.copy2(source.path / name, tmp / name)
            ModelPackage.load(tmp).seal()  # verified copy: what every later load is checked against
            tmp.rename(target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        log.info("registered model %s from %s", source.version, source.path)
        return ModelPackage.load(target)

    def activate(self, version: str) -> ModelPackage:
        """Make `version` live; it is verified first, so ACTIVE never names a broken package."""
        package = self.get(version)
        self._set_active(version)
        history = self.history()
        if not history or history[-1] != version:
            self._write_history(history + [version])
        log.info("active model is now %s", version)
        return package

    def _before_current(self) -> list[str]:
        """HISTORY without its trailing entries for the live version: its last is what rollback returns to."""
        history, current = self.history(), self.active_version()
        while history and history[-1] == current:
            history.pop()
        return history

    def rollback(self) -> ModelPackage:
        """Return to the version that was live before the current one."""
        current, history = self.active_version(), self._before_current()
        if not history:
            raise EngineError(f"nothing to roll back to: {current or 'no model'} is the first "
                              "active version in this registry")
        previous = history[-1]
        package = self.get(previous)
        self._set_active(previous)
        self._write_history(history)
        log.info("rolled back from %s to %s", current, previous)
        return package

    def remove(self, version: str) -> None:
        """Delete a version and everything cached beside it (exported graphs, engines).

        Each retrain registers a version, promoted or not, so a line that retrains often
        fills its disk with models (rtvp-n: about 60 MB with its ONNX graphs). The live
        version and the one `rollback` would return to are refused. The folder is first
        renamed to a hidden name, which `versions()` skips, so a removal that is killed
        half-way leaves no half package listed; the next removal clears what is left.
        """
        folder = self._folder(version)
        if version == self.active_version():
            raise EngineError(f"{version} is the live model; activate another one first "
                              "(`edge model activate VERSION`)")
        before = self._before_current()
        if before and before[-1] == version:
            raise EngineError(f"{version} is what `edge model rollback` returns to; "
                              "activate another version first if it must go")
        history = self.history()
        if version in history:  # first: a rollback must never walk back to a removed version
            self._write_history([v for v in history if v != version])
        folder.rename(self.root / f"{REMOVING}{version}")
        for leftover in self.root.glob(f"{REMOVING}*"):
            shutil.rmtree(leftover)
        log.info("removed model %s", version)

    def _set_active(self, version: str) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        with atomic_write(self.root / ACTIVE) as fh:  # fsynced, as HISTORY.json: which model is live
            fh.write(version + "\n")

    def _write_history(self, history: list[str]) -> None:
        with atomic_write(self.root / HISTORY) as fh:
            json.dump(history, fh)

    def ensure_default(self) -> ModelPackage | None:
        """On an empty registry, register and activate the model shipped in the repository."""
        if self.shipped is None or self.versions():
            return None
        if not (self.shipped / MANIFEST).is_file():
            raise EngineError(f"the registry {self.root} is empty and the shipped model "
                               f"{self.shipped} is missing; train one with `edge train`")
        package = self.register(self.shipped)
        return self.activate(package.version)


def new_version(prefix: str) -> str:
    """A version name that sorts by time: `<prefix>-YYYYmmddTHHMMSS` (UTC)."""
    return f"{prefix}-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%S')}"
