"""Tests for vnode.keys: BIP32 vectors, user paths, signer, seed file."""

from __future__ import annotations

import hashlib
import os
import pickle
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support import examples
from tests.unit.keys.bip32_serialize import b58check_decode, ripemd160_py, to_xprv, to_xpub
from vnode.domain.ids import MAX_USER_ID
from vnode.keys import bip32
from vnode.keys.bip32 import (
    CURVE_ORDER,
    HARDENED,
    InvalidKeyError,
    derive_child,
    derive_path,
    master_from_seed,
)
from vnode.keys.seed import SeedFileError, load_or_create_seed
from vnode.keys.signer import (
    VNODE_PURPOSE,
    Signer,
    SoftwareSigner,
    user_path,
)

H = HARDENED

# BIP32 published test vectors: (path, xpub, xprv).
VECTOR_1_SEED = "000102030405060708090a0b0c0d0e0f"
VECTOR_1 = [
    (
        (),
        "xpub661MyMwAqRbcFtXgS5sYJABqqG9YLmC4Q1Rdap9gSE8NqtwybGhePY2gZ29ESFjqJoCu1Rupje8YtGqsefD265TMg7usUDFdp6W1EGMcet8",
        "xprv9s21ZrQH143K3QTDL4LXw2F7HEK3wJUD2nW2nRk4stbPy6cq3jPPqjiChkVvvNKmPGJxWUtg6LnF5kejMRNNU3TGtRBeJgk33yuGBxrMPHi",
    ),
    (
        (0 | H,),
        "xpub68Gmy5EdvgibQVfPdqkBBCHxA5htiqg55crXYuXoQRKfDBFA1WEjWgP6LHhwBZeNK1VTsfTFUHCdrfp1bgwQ9xv5ski8PX9rL2dZXvgGDnw",
        "xprv9uHRZZhk6KAJC1avXpDAp4MDc3sQKNxDiPvvkX8Br5ngLNv1TxvUxt4cV1rGL5hj6KCesnDYUhd7oWgT11eZG7XnxHrnYeSvkzY7d2bhkJ7",
    ),
    (
        (0 | H, 1),
        "xpub6ASuArnXKPbfEwhqN6e3mwBcDTgzisQN1wXN9BJcM47sSikHjJf3UFHKkNAWbWMiGj7Wf5uMash7SyYq527Hqck2AxYysAA7xmALppuCkwQ",
        "xprv9wTYmMFdV23N2TdNG573QoEsfRrWKQgWeibmLntzniatZvR9BmLnvSxqu53Kw1UmYPxLgboyZQaXwTCg8MSY3H2EU4pWcQDnRnrVA1xe8fs",
    ),
    (
        (0 | H, 1, 2 | H),
        "xpub6D4BDPcP2GT577Vvch3R8wDkScZWzQzMMUm3PWbmWvVJrZwQY4VUNgqFJPMM3No2dFDFGTsxxpG5uJh7n7epu4trkrX7x7DogT5Uv6fcLW5",
        "xprv9z4pot5VBttmtdRTWfWQmoH1taj2axGVzFqSb8C9xaxKymcFzXBDptWmT7FwuEzG3ryjH4ktypQSAewRiNMjANTtpgP4mLTj34bhnZX7UiM",
    ),
    (
        (0 | H, 1, 2 | H, 2),
        "xpub6FHa3pjLCk84BayeJxFW2SP4XRrFd1JYnxeLeU8EqN3vDfZmbqBqaGJAyiLjTAwm6ZLRQUMv1ZACTj37sR62cfN7fe5JnJ7dh8zL4fiyLHV",
        "xprvA2JDeKCSNNZky6uBCviVfJSKyQ1mDYahRjijr5idH2WwLsEd4Hsb2Tyh8RfQMuPh7f7RtyzTtdrbdqqsunu5Mm3wDvUAKRHSC34sJ7in334",
    ),
    (
        (0 | H, 1, 2 | H, 2, 1000000000),
        "xpub6H1LXWLaKsWFhvm6RVpEL9P4KfRZSW7abD2ttkWP3SSQvnyA8FSVqNTEcYFgJS2UaFcxupHiYkro49S8yGasTvXEYBVPamhGW6cFJodrTHy",
        "xprvA41z7zogVVwxVSgdKUHDy1SKmdb533PjDz7J6N6mV6uS3ze1ai8FHa8kmHScGpWmj4WggLyQjgPie1rFSruoUihUZREPSL39UNdE3BBDu76",
    ),
]

VECTOR_2_SEED = (
    "fffcf9f6f3f0edeae7e4e1dedbd8d5d2cfccc9c6c3c0bdbab7b4b1aeaba8a5a2"
    "9f9c999693908d8a8784817e7b7875726f6c696663605d5a5754514e4b484542"
)
VECTOR_2 = [
    (
        (),
        "xpub661MyMwAqRbcFW31YEwpkMuc5THy2PSt5bDMsktWQcFF8syAmRUapSCGu8ED9W6oDMSgv6Zz8idoc4a6mr8BDzTJY47LJhkJ8UB7WEGuduB",
        "xprv9s21ZrQH143K31xYSDQpPDxsXRTUcvj2iNHm5NUtrGiGG5e2DtALGdso3pGz6ssrdK4PFmM8NSpSBHNqPqm55Qn3LqFtT2emdEXVYsCzC2U",
    ),
    (
        (0,),
        "xpub69H7F5d8KSRgmmdJg2KhpAK8SR3DjMwAdkxj3ZuxV27CprR9LgpeyGmXUbC6wb7ERfvrnKZjXoUmmDznezpbZb7ap6r1D3tgFxHmwMkQTPH",
        "xprv9vHkqa6EV4sPZHYqZznhT2NPtPCjKuDKGY38FBWLvgaDx45zo9WQRUT3dKYnjwih2yJD9mkrocEZXo1ex8G81dwSM1fwqWpWkeS3v86pgKt",
    ),
    (
        (0, 2147483647 | H),
        "xpub6ASAVgeehLbnwdqV6UKMHVzgqAG8Gr6riv3Fxxpj8ksbH9ebxaEyBLZ85ySDhKiLDBrQSARLq1uNRts8RuJiHjaDMBU4Zn9h8LZNnBC5y4a",
        "xprv9wSp6B7kry3Vj9m1zSnLvN3xH8RdsPP1Mh7fAaR7aRLcQMKTR2vidYEeEg2mUCTAwCd6vnxVrcjfy2kRgVsFawNzmjuHc2YmYRmagcEPdU9",
    ),
    (
        (0, 2147483647 | H, 1),
        "xpub6DF8uhdarytz3FWdA8TvFSvvAh8dP3283MY7p2V4SeE2wyWmG5mg5EwVvmdMVCQcoNJxGoWaU9DCWh89LojfZ537wTfunKau47EL2dhHKon",
        "xprv9zFnWC6h2cLgpmSA46vutJzBcfJ8yaJGg8cX1e5StJh45BBciYTRXSd25UEPVuesF9yog62tGAQtHjXajPPdbRCHuWS6T8XA2ECKADdw4Ef",
    ),
    (
        (0, 2147483647 | H, 1, 2147483646 | H),
        "xpub6ERApfZwUNrhLCkDtcHTcxd75RbzS1ed54G1LkBUHQVHQKqhMkhgbmJbZRkrgZw4koxb5JaHWkY4ALHY2grBGRjaDMzQLcgJvLJuZZvRcEL",
        "xprvA1RpRA33e1JQ7ifknakTFpgNXPmW2YvmhqLQYMmrj4xJXXWYpDPS3xz7iAxn8L39njGVyuoseXzU6rcxFLJ8HFsTjSyQbLYnMpCqE2VbFWc",
    ),
    (
        (0, 2147483647 | H, 1, 2147483646 | H, 2),
        "xpub6FnCn6nSzZAw5Tw7cgR9bi15UV96gLZhjDstkXXxvCLsUXBGXPdSnLFbdpq8p9HmGsApME5hQTZ3emM2rnY5agb9rXpVGyy3bdW6EEgAtqt",
        "xprvA2nrNbFZABcdryreWet9Ea4LvTJcGsqrMzxHx98MMrotbir7yrKCEXw7nadnHM8Dq38EGfSh6dqA9QWTyefMLEcBYJUuekgW4BYPJcr9E7j",
    ),
]

# Vector 3 checks that leading zero bytes of the private key are kept.
VECTOR_3_SEED = (
    "4b381541583be4423346c643850da4b320e46a87ae3d2a4e6da11eba819cd4ac"
    "ba45d239319ac14f863b8d5ab5a0d0c64d2e8a1e7d1457df2e5a3c51c73235be"
)
VECTOR_3 = [
    (
        (),
        "xpub661MyMwAqRbcEZVB4dScxMAdx6d4nFc9nvyvH3v4gJL378CSRZiYmhRoP7mBy6gSPSCYk6SzXPTf3ND1cZAceL7SfJ1Z3GC8vBgp2epUt13",
        "xprv9s21ZrQH143K25QhxbucbDDuQ4naNntJRi4KUfWT7xo4EKsHt2QJDu7KXp1A3u7Bi1j8ph3EGsZ9Xvz9dGuVrtHHs7pXeTzjuxBrCmmhgC6",
    ),
    (
        (0 | H,),
        "xpub68NZiKmJWnxxS6aaHmn81bvJeTESw724CRDs6HbuccFQN9Ku14VQrADWgqbhhTHBaohPX4CjNLf9fq9MYo6oDaPPLPxSb7gwQN3ih19Zm4Y",
        "xprv9uPDJpEQgRQfDcW7BkF7eTya6RPxXeJCqCJGHuCJ4GiRVLzkTXBAJMu2qaMWPrS7AANYqdq6vcBcBUdJCVVFceUvJFjaPdGZ2y9WACViL4L",
    ),
]

ALL_VECTORS = [
    pytest.param(seed, path, xpub, xprv, id=f"v{n}-m{''.join(f'/{i}' for i in path)}")
    for n, (seed, chains) in enumerate(
        [(VECTOR_1_SEED, VECTOR_1), (VECTOR_2_SEED, VECTOR_2), (VECTOR_3_SEED, VECTOR_3)],
        start=1,
    )
    for path, xpub, xprv in chains
]


# --- BIP32 -------------------------------------------------------------------


@pytest.mark.parametrize(("seed", "path", "xpub", "xprv"), ALL_VECTORS)
def test_bip32_vectors(seed: str, path: tuple[int, ...], xpub: str, xprv: str) -> None:
    key = derive_path(master_from_seed(bytes.fromhex(seed)), path)
    assert to_xprv(key) == xprv
    assert to_xpub(key) == xpub


def test_vectors_step_by_step_match_derive_path() -> None:
    master = master_from_seed(bytes.fromhex(VECTOR_1_SEED))
    key = master
    for index in VECTOR_1[-1][0]:
        key = derive_child(key, index)
    assert to_xprv(key) == VECTOR_1[-1][2]


def test_b58check_roundtrip_and_checksum() -> None:
    payload = b58check_decode(VECTOR_1[0][2])
    assert len(payload) == 78
    assert payload[:4] == bytes.fromhex("0488ADE4")
    tampered = VECTOR_1[0][2][:-1] + ("j" if VECTOR_1[0][2][-1] != "j" else "k")
    with pytest.raises(ValueError, match="checksum"):
        b58check_decode(tampered)


def test_ripemd160_fallback_matches_reference() -> None:
    # Published RIPEMD-160 test vectors.
    assert ripemd160_py(b"").hex() == "9c1185a5c5e9fc54612808977ee8f548b2258d31"
    assert ripemd160_py(b"abc").hex() == "8eb208f7e05d987a9b044a8e98c6b087f15a0bfc"
    assert ripemd160_py(b"1234567890" * 8).hex() == "9b752e45573d4b39f4dbd3323cab82bf63326bfb"
    try:
        hashlib.new("ripemd160")
    except ValueError:
        return
    for n in (0, 1, 55, 56, 63, 64, 65, 119, 120, 200):
        data = bytes(range(n))
        assert ripemd160_py(data) == hashlib.new("ripemd160", data).digest()


@pytest.mark.parametrize("il", [0, CURVE_ORDER, 2**256 - 1])
def test_invalid_master_key_refused(monkeypatch: pytest.MonkeyPatch, il: int) -> None:
    monkeypatch.setattr(bip32, "_hmac_sha512", lambda _k, _d: il.to_bytes(32, "big") + bytes(32))
    with pytest.raises(InvalidKeyError):
        master_from_seed(bytes(16))


def test_invalid_child_key_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    master = master_from_seed(bytes.fromhex(VECTOR_1_SEED))
    monkeypatch.setattr(
        bip32, "_hmac_sha512", lambda _k, _d: CURVE_ORDER.to_bytes(32, "big") + bytes(32)
    )
    with pytest.raises(InvalidKeyError):
        derive_child(master, 0)


def test_bad_seed_length_and_index_refused() -> None:
    with pytest.raises(ValueError):
        master_from_seed(bytes(15))
    with pytest.raises(ValueError):
        master_from_seed(bytes(65))
    master = master_from_seed(bytes(32))
    with pytest.raises(ValueError):
        derive_child(master, 2**32)
    with pytest.raises(ValueError):
        derive_child(master, -1)


def test_extended_key_repr_hides_private_key() -> None:
    key = master_from_seed(bytes.fromhex(VECTOR_1_SEED))
    assert key.private_key.hex() not in repr(key)
    assert key.private_key.hex() not in str(key)


# --- user paths --------------------------------------------------------------

P = VNODE_PURPOSE | H


@pytest.mark.parametrize(
    ("user_id", "expected"),
    [
        (1, (P, 0 | H, 0 | H, 1 | H)),
        (2**31 - 1, (P, 0 | H, 0 | H, (2**31 - 1) | H)),
        (2**31, (P, 0 | H, 1 | H, 0 | H)),
        (2**32, (P, 0 | H, 2 | H, 0 | H)),
        # 2^62+1 would collide with 1 under a two-segment split (bit 62 lost).
        (2**62 + 1, (P, 1 | H, 0 | H, 1 | H)),
        (2**63 - 1, (P, 1 | H, (2**31 - 1) | H, (2**31 - 1) | H)),
    ],
)
def test_user_path(user_id: int, expected: tuple[int, ...]) -> None:
    assert user_path(user_id) == expected
    assert all(i >= H for i in user_path(user_id))


@pytest.mark.parametrize("user_id", [0, -1, 2**63, 2**64])
def test_user_path_refuses_out_of_range(user_id: int) -> None:
    with pytest.raises(ValueError):
        user_path(user_id)


def test_user_path_refuses_non_int() -> None:
    with pytest.raises(TypeError):
        user_path(True)
    with pytest.raises(TypeError):
        user_path("5")  # type: ignore[arg-type]


def _id_from_path(path: tuple[int, ...]) -> int:
    # Inverse of user_path: its existence is the proof that user_path is injective.
    assert path[0] == P
    top, mid, low = (i & ~H for i in path[1:])
    return top << 62 | mid << 31 | low


@given(st.integers(min_value=1, max_value=MAX_USER_ID))
def test_user_path_is_invertible(user_id: int) -> None:
    assert _id_from_path(user_path(user_id)) == user_id


SIGNER = SoftwareSigner(bytes.fromhex(VECTOR_2_SEED))


@settings(max_examples=examples(50), deadline=None)
@given(
    st.integers(min_value=1, max_value=MAX_USER_ID),
    st.integers(min_value=1, max_value=MAX_USER_ID),
)
def test_distinct_ids_distinct_paths_and_pubkeys(a: int, b: int) -> None:
    if a == b:
        assert SIGNER.node_pubkey(a) == SIGNER.node_pubkey(b)
        return
    assert user_path(a) != user_path(b)
    assert SIGNER.node_pubkey(a) != SIGNER.node_pubkey(b)


# --- signer ------------------------------------------------------------------


def test_node_pubkey_matches_bip32_path() -> None:
    seed = bytes.fromhex(VECTOR_1_SEED + VECTOR_1_SEED)
    signer = SoftwareSigner(seed)
    for user_id in (1, 2**31, 2**62 + 1, 2**63 - 1, 5_000_000_000):
        expected = derive_path(master_from_seed(seed), user_path(user_id)).public_key()
        pub = signer.node_pubkey(user_id)
        assert pub == expected.hex()
        assert len(bytes.fromhex(pub)) == 33
        assert pub[:2] in ("02", "03")


def test_node_pubkey_cached_and_validated() -> None:
    signer = SoftwareSigner(bytes(32))
    assert isinstance(signer, Signer)
    first = signer.node_pubkey(42)
    assert signer.node_pubkey(42) == first
    info = signer.cache_info()
    assert (info.hits, info.misses) == (1, 1)
    assert info.maxsize == 100_000
    with pytest.raises(ValueError):
        signer.node_pubkey(0)
    with pytest.raises(TypeError):
        signer.node_pubkey(True)


def test_different_seeds_give_different_keys() -> None:
    assert SoftwareSigner(bytes(32)).node_pubkey(7) != SoftwareSigner(
        bytes(31) + b"\x01"
    ).node_pubkey(7)


def test_signer_repr_hides_secrets() -> None:
    seed = bytes.fromhex(VECTOR_1_SEED * 2)
    signer = SoftwareSigner(seed)
    account = derive_path(master_from_seed(seed), (P,))
    for text in (repr(signer), str(signer), f"{signer}", f"{signer!r}"):
        assert seed.hex() not in text
        assert account.private_key.hex() not in text
        assert to_xprv(account) not in text
    with pytest.raises(TypeError):
        pickle.dumps(signer)


# --- seed file ---------------------------------------------------------------


def test_seed_file_created_0600_then_reused(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "seed.hex"
    seed = load_or_create_seed(path, None)
    assert len(seed) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == seed.hex()
    assert load_or_create_seed(path, None) == seed


def test_seed_file_refused_when_group_or_other_readable(tmp_path: Path) -> None:
    path = tmp_path / "seed.hex"
    load_or_create_seed(path, None)
    for mode in (0o644, 0o640, 0o604, 0o660):
        os.chmod(path, mode)
        with pytest.raises(SeedFileError, match="chmod 600"):
            load_or_create_seed(path, None)


def test_seed_file_64_bytes_and_malformed(tmp_path: Path) -> None:
    path = tmp_path / "seed.hex"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, (("ab" * 64) + "\n").encode())
    os.close(fd)
    assert load_or_create_seed(path, None) == bytes([0xAB]) * 64
    path.write_text("zz" * 32)
    with pytest.raises(ValueError, match="not valid hex"):
        load_or_create_seed(path, None)


def test_seed_symlink_refused(tmp_path: Path) -> None:
    target = tmp_path / "real.hex"
    load_or_create_seed(target, None)
    link = tmp_path / "link.hex"
    link.symlink_to(target)
    with pytest.raises(OSError):
        load_or_create_seed(link, None)


def test_env_seed_accepted(tmp_path: Path) -> None:
    path = tmp_path / "seed.hex"
    assert load_or_create_seed(path, "01" * 32) == b"\x01" * 32
    assert load_or_create_seed(path, " " + "Fe" * 64 + "\n") == b"\xfe" * 64
    assert not path.exists()  # env wins; no file is created


@pytest.mark.parametrize(
    "value",
    ["", "00" * 31, "00" * 33, "00" * 48, "0" * 63, "zz" * 32, "0x" + "00" * 31, "g" * 128],
)
def test_env_seed_malformed_refused(tmp_path: Path, value: str) -> None:
    with pytest.raises(ValueError, match="seed") as exc:
        load_or_create_seed(tmp_path / "seed.hex", value)
    if len(value) >= 8:
        assert value not in str(exc.value)
