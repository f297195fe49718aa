#!/usr/bin/env python3
"""Boot-time validation like MCUboot: magic, TLV layout, SHA-256 TLV and, with --mcuboot-key,
the signature (Ed25519, ECDSA P-256, RSA-2048 PSS). Images come from tests/tools/mkimage.py, an
independent writer; invalid ones must not boot and are erased from the secondary slot."""
import simtest
from simtest import QUICK, check, eq, reset_and_wait, slot_view
import smpc


def install(c, sim, img, image=0):
    r = c.upload(img, image=image)
    eq(r.get("off"), len(img), "upload %r" % r)
    c.state_write(smpc.image_hash(img), True)
    reset_and_wait(c, sim)


def t_unsigned(ctx):
    good = ctx.mkimage("2.0.0", 6000, seed=31)
    with ctx.start(1, QUICK) as sim:
        c = smpc.UdpClient(sim.port(0))
        for corrupt in ("hash", "body", "tlv-len"):
            bad = ctx.mkimage("3.0.0", 6000, seed=32, corrupt=corrupt)
            r = c.upload(bad, sha=False)
            eq(r.get("off"), len(bad), "a bad image uploads fine (%s)" % corrupt)
            h = smpc.image_hash(bad)
            if corrupt == "tlv-len":
                # img_mgmt cannot read its TLVs either: the slot is not listed, no hash to mark
                check((0, 1) not in smpc.slots(c.state()), "unreadable TLVs not listed")
                c.erase()
                continue
            c.state_write(h, True)
            reset_and_wait(c, sim)
            eq(slot_view(c), {(0, 0): {"v1.0.0", "active", "confirmed"}},
               "%s: rejected at boot and erased" % corrupt)
        check(sim.log().count("event: boot-reject") == 2)
        install(c, sim, good)
        eq(slot_view(c), {(0, 0): {"v2.0.0", "active", "confirmed"}}, "good image boots")
        c.close()


def t_signed(ctx):
    for kind in ("ed25519", "ecdsa-p256", "rsa-2048"):
        key = ctx.keygen(kind, "%s.pem" % kind)
        other = ctx.keygen(kind, "%s-other.pem" % kind)
        good = ctx.mkimage("2.0.0", 6000, seed=33, key=key, key_type=kind)
        unsigned = ctx.mkimage("2.1.0", 6000, seed=34)
        wrong = ctx.mkimage("2.2.0", 6000, seed=35, key=other, key_type=kind)
        badsig = ctx.mkimage("2.3.0", 6000, seed=36, key=key, key_type=kind, corrupt="sig")
        with ctx.start(1, QUICK + ["--mcuboot-key", key, "--mode", "swap"]) as sim:
            c = smpc.UdpClient(sim.port(0))
            for img, what in ((unsigned, "unsigned"), (wrong, "other key"), (badsig, "bad sig")):
                install(c, sim, img)
                eq(slot_view(c), {(0, 0): {"v1.0.0", "active", "confirmed"}},
                   "%s %s rejected" % (kind, what))
            install(c, sim, good)
            eq(slot_view(c)[(0, 0)], {"v2.0.0", "active", "confirmed"}, "%s signed boots" % kind)
            log = sim.log()
            check("no valid signature" in log, kind)
            c.close()


def t_generated_images_signed(ctx):
    """With a private key the starting images are signed too: net core updates validate."""
    key = ctx.keygen("ed25519", "gen.pem")
    net = ctx.mkimage("5.0.0", 4000, seed=37, key=key, key_type="ed25519")
    with ctx.start(1, QUICK + ["--mcuboot-key", key]) as sim:
        c = smpc.UdpClient(sim.port(0))
        install(c, sim, net, image=1)
        eq(c.request(smpc.OP_READ, 64, 0, {})["body"]["net"], "5.0.0", "net core updated")
        c.close()


if __name__ == "__main__":
    simtest.run([t_unsigned, t_signed, t_generated_images_signed])
