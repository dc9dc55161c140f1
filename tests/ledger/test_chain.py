"""The pure integrity functions: canonical encoding, entry hashes, chain verification, the RFC 6962 tree."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sanzi.ledger import chain

ENTRY = chain.CanonicalEntry(
    village_code="440111020200",
    seq=1,
    entry_date=date(2024, 3, 1),
    memo="收鱼塘承包款",
    counterparty=None,
    source="manual",
    reverses_seq=None,
    posted_at=datetime(2024, 3, 1, 8, 30, 0, 123456, tzinfo=UTC),
    total_fen=123450,
    lines=(
        chain.CanonicalLine(2, "50101", 0, 123450, None),
        chain.CanonicalLine(1, "102", 123450, 0, "转账"),
    ),
)


def test_canonical_encoding_is_compact_sorted_utf8_json() -> None:
    encoded = chain.canonical_bytes(ENTRY)
    assert encoded == (
        '{"counterparty":null,"entry_date":"2024-03-01","lines":[[1,"102",123450,0,"转账"],'
        '[2,"50101",0,123450,null]],"memo":"收鱼塘承包款","posted_at":"2024-03-01T08:30:00.123456Z",'
        '"reverses_seq":null,"seq":1,"source":"manual","total_fen":123450,"v":1,"village_code":"440111020200"}'
    ).encode("utf-8")
    document = json.loads(encoded)
    assert list(document) == sorted(document)


def test_posted_at_is_encoded_in_utc_whatever_its_zone() -> None:
    shanghai = ENTRY.posted_at.astimezone(timezone(timedelta(hours=8)))
    assert chain.canonical_bytes(replace(ENTRY, posted_at=shanghai)) == chain.canonical_bytes(ENTRY)
    naive = ENTRY.posted_at.replace(tzinfo=None)  # SQLite hands back naive UTC
    assert chain.canonical_bytes(replace(ENTRY, posted_at=naive)) == chain.canonical_bytes(ENTRY)


def test_entry_hash_covers_the_previous_hash_and_the_entry() -> None:
    canonical = chain.canonical_bytes(ENTRY)
    expected = hashlib.sha256(bytes(32) + canonical).hexdigest()
    assert chain.entry_hash(chain.GENESIS_HASH, canonical) == expected
    assert chain.entry_hash("11" * 32, canonical) != expected
    for change in ({"memo": "收鱼塘承包款 "}, {"seq": 2}, {"total_fen": 123451}, {"reverses_seq": 1},
                   {"entry_date": date(2024, 3, 2)}, {"counterparty": "张三"}, {"village_code": "440118001200"}):
        assert chain.entry_hash(chain.GENESIS_HASH, chain.canonical_bytes(replace(ENTRY, **change))) != expected


def _chain_of(n: int) -> list[chain.ChainLink]:
    links, head = [], chain.GENESIS_HASH
    for seq in range(1, n + 1):
        entry = replace(ENTRY, seq=seq, memo=f"entry {seq}")
        digest = chain.entry_hash(head, chain.canonical_bytes(entry))
        links.append(chain.ChainLink(entry_id=100 + seq, prev_hash=head, hash=digest, entry=entry))
        head = digest
    return links


def test_verify_chain_accepts_an_intact_chain_and_names_the_first_break() -> None:
    links = _chain_of(4)
    head = links[-1].hash
    assert chain.verify_chain(links, 4, head) is None
    assert chain.verify_chain([], 0, chain.GENESIS_HASH) is None

    edited = [*links[:1], replace(links[1], entry=replace(links[1].entry, memo="changed")), *links[2:]]
    edit = chain.verify_chain(edited, 4, head)
    assert (edit.seq, edit.entry_id, edit.reason) == (2, 102, chain.HASH_MISMATCH)

    gap = chain.verify_chain([links[0], *links[2:]], 4, head)
    assert (gap.seq, gap.entry_id, gap.reason) == (2, 103, chain.MISSING_SEQ)

    swapped_entries = [replace(links[1], entry=replace(links[1].entry, seq=1)),
                       replace(links[0], entry=replace(links[0].entry, seq=2)), *links[2:]]
    swap = chain.verify_chain(swapped_entries, 4, head)
    assert (swap.seq, swap.reason) == (1, chain.PREV_HASH_MISMATCH)

    short = chain.verify_chain(links[:3], 4, head)
    assert (short.seq, short.reason) == (4, chain.HEAD_MISMATCH)
    wrong_head = chain.verify_chain(links, 4, "ab" * 32)
    assert (wrong_head.seq, wrong_head.reason) == (4, chain.HEAD_MISMATCH)
    too_long = chain.verify_chain(links, 3, links[2].hash)
    assert too_long.reason == chain.HEAD_MISMATCH


# ---- RFC 6962 ---------------------------------------------------------------------------------------------

# the Certificate Transparency reference test vectors (certificate-transparency merkle_tree_test)
CT_LEAVES = [bytes.fromhex(h) for h in
             ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"]]
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
CT_PATHS = {
    (0, 8): ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
             "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
             "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"],
    (5, 8): ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
             "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
             "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"],
    (2, 3): ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
    (0, 1): [],
}


def test_merkle_root_matches_the_rfc_6962_reference_vectors() -> None:
    assert chain.merkle_root([]).hex() == hashlib.sha256(b"").hexdigest()
    for size, root in enumerate(CT_ROOTS, start=1):
        assert chain.merkle_root(CT_LEAVES[:size]).hex() == root


@pytest.mark.parametrize(("index", "size"), list(CT_PATHS))
def test_audit_paths_match_the_reference_vectors(index: int, size: int) -> None:
    path = chain.inclusion_proof(index, CT_LEAVES[:size])
    assert [p.hex() for p in path] == CT_PATHS[(index, size)]
    assert chain.verify_inclusion(CT_LEAVES[index], index, size, path, bytes.fromhex(CT_ROOTS[size - 1]))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.binary(max_size=8), min_size=1, max_size=70, unique=True), st.data())
def test_every_leaf_proves_and_nothing_else_does(leaves: list[bytes], data: st.DataObject) -> None:
    root = chain.merkle_root(leaves)
    size = len(leaves)
    index = data.draw(st.integers(0, size - 1))
    path = chain.inclusion_proof(index, leaves)
    assert chain.verify_inclusion(leaves[index], index, size, path, root)
    assert not chain.verify_inclusion(leaves[index] + b"x", index, size, path, root)
    assert not chain.verify_inclusion(leaves[index], index, size, path, hashlib.sha256(root).digest())
    if size > 1:
        other = (index + 1) % size
        assert not chain.verify_inclusion(leaves[other], index, size, path, root)
        assert not chain.verify_inclusion(leaves[index], other, size, path, root)
        assert not chain.verify_inclusion(leaves[index], index, size, path[:-1], root)


def test_leaf_encoding_is_fixed_width() -> None:
    leaf = chain.leaf_bytes("440111020200", 3, "ab" * 32)
    assert leaf == b"440111020200" + (3).to_bytes(8, "big") + bytes.fromhex("ab" * 32)
    assert len(leaf) == 52
    with pytest.raises(ValueError):
        chain.leaf_bytes("4401110202", 3, "ab" * 32)


def test_a_chain_must_pass_through_its_published_head() -> None:
    links = _chain_of(4)
    assert chain.verify_chain(links, 4, links[-1].hash, published=(2, links[1].hash)) is None
    moved = chain.verify_chain(links, 4, links[-1].hash, published=(2, "cd" * 32))
    assert (moved.seq, moved.entry_id, moved.reason) == (2, 102, chain.PUBLISHED_MISMATCH)
    shrunk = chain.verify_chain(links[:1], 1, links[0].hash, published=(2, links[1].hash))
    assert (shrunk.seq, shrunk.reason) == (2, chain.PUBLISHED_MISMATCH)
