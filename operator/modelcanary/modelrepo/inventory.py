"""`modelcanary repo list`: models, versions, signatures and export facts."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from modelcanary.errors import ModelcanaryError
from modelcanary.modelrepo.repository import ModelRepository
from modelcanary.tables import format_table


@dataclass(frozen=True)
class VersionRow:
    """One version as `repo list` shows it."""

    model: str
    version: int
    signature: str
    max_batch_size: int | None
    exported_at: str
    torch: str
    opset: int | None
    max_abs_err: float | None
    size_kib: float
    note: str


def inventory(repo: ModelRepository) -> list[VersionRow]:
    """Every version of every model, with what its manifest says (or why it cannot)."""
    rows: list[VersionRow] = []
    for model in repo.models():
        for version in repo.versions(model):
            directory = repo.version_dir(model, version)
            size = sum(p.stat().st_size for p in directory.rglob("*") if p.is_file()) / 1024
            try:
                manifest = repo.read_manifest(model, version)
            except ModelcanaryError as exc:
                rows.append(
                    VersionRow(model, version, "?", None, "?", "?", None, None, size, str(exc))
                )
                continue
            data = manifest.data
            rows.append(
                VersionRow(
                    model=model,
                    version=version,
                    signature=manifest.signature.describe(),
                    max_batch_size=manifest.max_batch_size,
                    exported_at=str(data.get("exported_at", "?")),
                    torch=str(data.get("tools", {}).get("torch", "?")),
                    opset=data.get("tools", {}).get("opset"),
                    max_abs_err=max(
                        (float(r["max_abs_err"]) for r in data["parity"]["results"]), default=0.0
                    ),
                    size_kib=size,
                    note="",
                )
            )
    return rows


def render_table(rows: list[VersionRow]) -> str:
    header = (
        "MODEL",
        "VERSION",
        "SIGNATURE",
        "MAX BATCH",
        "EXPORTED",
        "TORCH",
        "OPSET",
        "MAX ABS ERR",
        "SIZE",
    )
    table: list[tuple[str, ...]] = [header]
    for r in rows:
        table.append(
            (
                r.model,
                str(r.version),
                r.signature if not r.note else f"({r.note})",
                "-" if r.max_batch_size is None else str(r.max_batch_size),
                r.exported_at,
                r.torch,
                "-" if r.opset is None else str(r.opset),
                "-" if r.max_abs_err is None else f"{r.max_abs_err:.2e}",
                f"{r.size_kib:.1f} KiB",
            )
        )
    return format_table(table)


def render_json(rows: list[VersionRow]) -> list[dict[str, object]]:
    return [asdict(r) for r in rows]
