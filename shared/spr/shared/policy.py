"""Policy versions in the loop: the trainer publishes each round's adapter and announces it on Redis.

* :func:`publish_adapter` copies a trained adapter to ``<policies_dir>/round-NNN/`` (staged, then renamed:
  a reader never sees half a folder) and returns its :class:`PolicyVersion` (content hash included).
* :class:`PolicyBoard` holds the newest version under the Redis key ``spr:policy`` (JSON). Announcing
  never moves backwards: an older round than the one announced is ignored.
* Generators read the board between tasks and load the new adapter (transformers: reload and merge;
  vLLM: ``/v1/load_lora_adapter``), so every candidate group records the policy that sampled it.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Final

from spr.shared.errors import SprError
from spr.shared.schemas import PolicyVersion

if TYPE_CHECKING:
    import redis

logger = logging.getLogger(__name__)

POLICY_KEY: Final = "spr:policy"
# Written into each published adapter folder: a generator given that folder as a fixed adapter
# (SPR_GENERATOR_ADAPTER) records the same version. Not part of the adapter's hash.
POLICY_FILE: Final = "spr_policy.json"

# Compare-and-set: store the version unless a newer round is already announced.
_ANNOUNCE: Final = """
local current = redis.call('GET', KEYS[1])
if current then
  local decoded = cjson.decode(current)
  if tonumber(decoded['round']) > tonumber(ARGV[2]) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1])
return 1
"""


class PolicyError(SprError):
    """A policy folder or announcement that cannot be used."""


def adapter_hash(folder: Path) -> str:
    """sha256 over the adapter's file names and bytes (sorted), 16 hex digits."""
    if not (folder / "adapter_config.json").is_file():
        raise PolicyError(f"{folder} is not a LoRA adapter folder (no adapter_config.json)")
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != POLICY_FILE):
        digest.update(str(path.relative_to(folder)).encode() + b"\0")
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def policy_dir(policies_dir: Path, round_: int) -> Path:
    return policies_dir / f"round-{round_:03d}"


def publish_adapter(adapter: Path, policies_dir: Path, *, round_: int, model_id: str) -> PolicyVersion:
    """Copy ``adapter`` to ``<policies_dir>/round-NNN`` (replacing an earlier copy of that round)."""
    if round_ < 1:
        raise PolicyError(f"a published policy has round >= 1 (round 0 is the base model), got {round_}")
    digest = adapter_hash(adapter)
    target = policy_dir(policies_dir, round_)
    staging = policies_dir / f".round-{round_:03d}.partial"
    policies_dir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(adapter, staging)
    version = PolicyVersion(
        model_id=model_id, round=round_, adapter_hash=digest, adapter_dir=str(target.resolve())
    )
    (staging / POLICY_FILE).write_text(version.model_dump_json(indent=2) + "\n")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    logger.info("policy round %d (%s) published to %s", round_, digest, target)
    return version


def read_policy_file(adapter: Path) -> PolicyVersion | None:
    """The version a published adapter folder records (None for an adapter published elsewhere)."""
    path = adapter / POLICY_FILE
    if not path.is_file():
        return None
    try:
        return PolicyVersion.model_validate_json(path.read_text())
    except ValueError as exc:
        raise PolicyError(f"{path} does not hold a PolicyVersion: {exc}") from None


class PolicyBoard:
    """The newest announced policy, under Redis key ``spr:policy``."""

    def __init__(self, client: redis.Redis, key: str = POLICY_KEY) -> None:
        self.client = client
        self.key = key

    @classmethod
    def from_url(cls, url: str) -> PolicyBoard:
        import redis

        return cls(redis.Redis.from_url(url))

    def announce(self, version: PolicyVersion) -> bool:
        """Make ``version`` the current policy; False (and no change) when a newer round is announced."""
        stored = self.client.eval(_ANNOUNCE, 1, self.key, version.model_dump_json(), str(version.round))
        return bool(stored)

    def current(self) -> PolicyVersion | None:
        """The announced policy, or None when none was (generators then run the base model)."""
        raw = self.client.get(self.key)
        if raw is None:
            return None
        try:
            return PolicyVersion.model_validate_json(raw)
        except ValueError as exc:
            raise PolicyError(f"Redis key {self.key} does not hold a PolicyVersion: {exc}") from None

    def close(self) -> None:
        self.client.close()
