"""The tamper-evident books: canonical entry encoding, the per-collective hash chain, the RFC 6962 Merkle tree.

Pure functions only (no database), so anyone holding an export of the books can re-check them.

* An entry's hash is ``SHA-256(bytes.fromhex(prev_hash) || canonical_bytes(entry))``; the first entry of a
  collective's chain follows :data:`GENESIS_HASH` (64 zeros).
* The canonical encoding is UTF-8 JSON with sorted keys and no whitespace; amounts are integer fen, dates ISO
  ``YYYY-MM-DD``, ``posted_at`` UTC ``YYYY-MM-DDTHH:MM:SS.ffffffZ``; lines are arrays
  ``[line_no, account_code, debit_fen, credit_fen, memo]`` in line order. A reversal names the *seq* of the entry
  it reverses (a position in the same chain, unlike a database id).
* The published root is the RFC 6962 Merkle Tree Hash over one leaf per collective, ordered by village code.
  A leaf is 52 bytes: the 12 ASCII digits of the village code ‖ the chain length as an unsigned 64-bit
  big-endian integer ‖ the 32 raw bytes of the chain head.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

GENESIS_HASH = "0" * 64
CANONICAL_VERSION = 1


@dataclass(frozen=True)
class CanonicalLine:
    line_no: int
    account_code: str
    debit_fen: int
    credit_fen: int
    memo: str | None


@dataclass(frozen=True)
class CanonicalEntry:
    """Everything an entry's hash covers."""

    village_code: str
    seq: int
    entry_date: date
    memo: str
    counterparty: str | None
    source: str
    reverses_seq: int | None
    posted_at: datetime
    total_fen: int
    lines: tuple[CanonicalLine, ...]


def utc_timestamp(moment: datetime) -> str:
    """A fixed-width UTC timestamp with microseconds (naive values are taken as UTC, as SQLite returns them)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_bytes(entry: CanonicalEntry) -> bytes:
    document = {
        "v": CANONICAL_VERSION,
        "village_code": entry.village_code,
        "seq": entry.seq,
        "entry_date": entry.entry_date.isoformat(),
        "memo": entry.memo,
        "counterparty": entry.counterparty,
        "source": entry.source,
        "reverses_seq": entry.reverses_seq,
        "posted_at": utc_timestamp(entry.posted_at),
        "total_fen": entry.total_fen,
        "lines": [
            [line.line_no, line.account_code, line.debit_fen, line.credit_fen, line.memo]
            for line in sorted(entry.lines, key=lambda line: line.line_no)
        ],
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def entry_hash(prev_hash_hex: str, canonical: bytes) -> str:
    return hashlib.sha256(bytes.fromhex(prev_hash_hex) + canonical).hexdigest()


# ---- verifying one chain ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChainLink:
    """A stored entry as read back: its id, the hashes stored with it and its canonical content."""

    entry_id: int
    prev_hash: str
    hash: str
    entry: CanonicalEntry


@dataclass(frozen=True)
class ChainBreak:
    """The first place a chain does not verify. ``reason`` is one of the constants below."""

    seq: int
    entry_id: int | None
    reason: str
    detail: str


MISSING_SEQ = "missing_seq"
PREV_HASH_MISMATCH = "prev_hash_mismatch"
HASH_MISMATCH = "hash_mismatch"
HEAD_MISMATCH = "head_mismatch"
PUBLISHED_MISMATCH = "published_root_mismatch"


def verify_chain(
    links: Iterable[ChainLink], chain_length: int, chain_head: str, published: tuple[int, str] | None = None
) -> ChainBreak | None:
    """Re-compute a chain given in ``seq`` order; None if it is intact and ends at (chain_length, chain_head).

    ``published`` is the (length, head) of this chain in a published root: the chain must pass through it,
    which catches a chain rewritten wholesale (every hash recomputed) after publication.
    """
    expected_seq, head = 1, GENESIS_HASH
    for link in links:
        seq = link.entry.seq
        if seq != expected_seq:
            return ChainBreak(expected_seq, link.entry_id, MISSING_SEQ, f"expected seq {expected_seq}, found {seq}")
        if link.prev_hash != head:
            return ChainBreak(seq, link.entry_id, PREV_HASH_MISMATCH, f"prev_hash {link.prev_hash} != {head}")
        computed = entry_hash(head, canonical_bytes(link.entry))
        if computed != link.hash:
            return ChainBreak(seq, link.entry_id, HASH_MISMATCH, f"stored hash {link.hash} != computed {computed}")
        if published and seq == published[0] and computed != published[1]:
            return ChainBreak(seq, link.entry_id, PUBLISHED_MISMATCH, f"hash {computed} != published {published[1]}")
        head, expected_seq = computed, seq + 1
    length = expected_seq - 1
    if length != chain_length:
        missing = min(length, chain_length) + 1
        detail = f"chain has {length} entries, collective.chain_length {chain_length}"
        return ChainBreak(missing, None, HEAD_MISMATCH, detail)
    if head != chain_head:
        return ChainBreak(length, None, HEAD_MISMATCH, f"last hash {head} != collective.chain_head {chain_head}")
    if published and published[0] > length:
        return ChainBreak(length + 1, None, PUBLISHED_MISMATCH, f"published length {published[0]} > {length}")
    return None


# ---- the published root: an RFC 6962 Merkle tree over every chain head ------------------------------------


def leaf_bytes(village_code: str, chain_length: int, chain_head: str) -> bytes:
    code = village_code.encode("ascii")
    if len(code) != 12 or not code.isdigit():
        raise ValueError(f"a leaf needs a 12-digit village code, got {village_code!r}")
    return code + chain_length.to_bytes(8, "big") + bytes.fromhex(chain_head)


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def _root_of_hashes(hashes: Sequence[bytes]) -> bytes:
    if len(hashes) == 1:
        return hashes[0]
    k = _split(len(hashes))
    return node_hash(_root_of_hashes(hashes[:k]), _root_of_hashes(hashes[k:]))


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """RFC 6962 Merkle Tree Hash of the leaves (the hash of the empty string for no leaves)."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    return _root_of_hashes([leaf_hash(leaf) for leaf in leaves])


def _path(index: int, hashes: Sequence[bytes]) -> list[bytes]:
    if len(hashes) <= 1:
        return []
    k = _split(len(hashes))
    if index < k:
        return [*_path(index, hashes[:k]), _root_of_hashes(hashes[k:])]
    return [*_path(index - k, hashes[k:]), _root_of_hashes(hashes[:k])]


def inclusion_proof(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """The audit path of leaf ``index`` (RFC 6962 section 2.1.1), nearest sibling first."""
    if not 0 <= index < len(leaves):
        raise IndexError(f"leaf {index} outside a tree of {len(leaves)}")
    return _path(index, [leaf_hash(leaf) for leaf in leaves])


def verify_inclusion(leaf: bytes, index: int, tree_size: int, path: Sequence[bytes], root: bytes) -> bool:
    """Check an audit path against a root (the algorithm of RFC 9162 section 2.1.3.2)."""
    if not 0 <= index < tree_size:
        return False
    fn, sn = index, tree_size - 1
    result = leaf_hash(leaf)
    for sibling in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            result = node_hash(sibling, result)
            if not fn & 1:
                while fn and not fn & 1:
                    fn, sn = fn >> 1, sn >> 1
        else:
            result = node_hash(result, sibling)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and result == root
