#!/usr/bin/env python3
"""Test-fixture MCUboot image writer, independent of fotagw's C code.

It exists so that the parsers and the simulator are checked against images made by a second,
separate implementation of the format (protocol-notes §5), not only by fotactl's own writer.
Signatures are made with the openssl command line.

  mkimage.py -o out.bin --version 1.2.3+4 --size 300000 [--seed 7] [--payload FILE]
             [--key PEM --key-type ed25519|ecdsa-p256|rsa-2048|rsa-3072]
             [--header-size 512] [--security-counter N] [--corrupt WHAT]

--corrupt: magic | hash | tlv-len | sig | body (flip a body byte after hashing)
"""
import argparse
import hashlib
import os
import random
import struct
import subprocess
import sys
import tempfile

IMAGE_MAGIC = 0x96F3B83D
TLV_INFO_MAGIC = 0x6907
TLV_PROT_INFO_MAGIC = 0x6908
T_KEYHASH, T_SHA256, T_RSA2048, T_ECDSA, T_RSA3072, T_ED25519, T_SEC_CNT = (
    0x01, 0x10, 0x20, 0x22, 0x23, 0x24, 0x50)


def parse_version(s):
    build = 0
    if "+" in s:
        s, b = s.split("+", 1)
        build = int(b)
    parts = [int(x) for x in s.split(".")]
    while len(parts) < 3:
        parts.append(0)
    return parts[0], parts[1], parts[2], build


def openssl(args, data=None):
    return subprocess.run(["openssl"] + args, input=data, capture_output=True, check=True).stdout


def sign(key, key_type, digest):
    with tempfile.NamedTemporaryFile() as f:
        f.write(digest)
        f.flush()
        if key_type == "ed25519":
            sig = openssl(["pkeyutl", "-sign", "-inkey", key, "-rawin", "-in", f.name])
            pub = openssl(["pkey", "-in", key, "-pubout", "-outform", "DER"])
            return T_ED25519, sig, pub
        if key_type == "ecdsa-p256":
            sig = openssl(["pkeyutl", "-sign", "-inkey", key, "-in", f.name])
            pub = openssl(["pkey", "-in", key, "-pubout", "-outform", "DER"])
            return T_ECDSA, sig, pub
        if key_type in ("rsa-2048", "rsa-3072"):
            sig = openssl(["pkeyutl", "-sign", "-inkey", key, "-in", f.name,
                           "-pkeyopt", "digest:sha256", "-pkeyopt", "rsa_padding_mode:pss",
                           "-pkeyopt", "rsa_pss_saltlen:32"])
            pub = openssl(["rsa", "-in", key, "-RSAPublicKey_out", "-outform", "DER"])
            return (T_RSA2048 if key_type == "rsa-2048" else T_RSA3072), sig, pub
    raise SystemExit(f"unknown key type {key_type}")


def tlv(t, v):
    return struct.pack("<HH", t, len(v)) + v


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--version", default="1.0.0+0")
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--payload")
    ap.add_argument("--key")
    ap.add_argument("--key-type", default="ed25519")
    ap.add_argument("--header-size", type=int, default=0x200)
    ap.add_argument("--load-addr", type=int, default=0)
    ap.add_argument("--security-counter", type=int)
    ap.add_argument("--corrupt", choices=["magic", "hash", "tlv-len", "sig", "body"])
    a = ap.parse_args()

    if a.payload:
        body = open(a.payload, "rb").read()
    else:
        body = random.Random(a.seed).randbytes(a.size)
    prot = b""
    if a.security_counter is not None:
        entries = tlv(T_SEC_CNT, struct.pack("<I", a.security_counter))
        prot = struct.pack("<HH", TLV_PROT_INFO_MAGIC, 4 + len(entries)) + entries
    major, minor, rev, build = parse_version(a.version)
    magic = IMAGE_MAGIC if a.corrupt != "magic" else 0x12345678
    hdr = struct.pack("<IIHHIIBBHII", magic, a.load_addr, a.header_size, len(prot), len(body),
                      0, major, minor, rev, build, 0)
    hdr += b"\0" * (a.header_size - len(hdr))
    hashed = hdr + body + prot
    digest = hashlib.sha256(hashed).digest()

    entries = tlv(T_SHA256, digest if a.corrupt != "hash" else bytes(32))
    if a.key:
        t, sig, pub = sign(a.key, a.key_type, digest)
        if a.corrupt == "sig":
            sig = bytes([sig[0] ^ 1]) + sig[1:]
        entries += tlv(T_KEYHASH, hashlib.sha256(pub).digest()) + tlv(t, sig)
    tot = 4 + len(entries)
    if a.corrupt == "tlv-len":
        tot += 100  # claims more TLV bytes than the file has
    out = hashed + struct.pack("<HH", TLV_INFO_MAGIC, tot) + entries
    if a.corrupt == "body":
        i = a.header_size + len(body) // 2
        out = out[:i] + bytes([out[i] ^ 0xFF]) + out[i + 1:]
    with open(a.output, "wb") as f:
        f.write(out)
    print(digest.hex())


main()
