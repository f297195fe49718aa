#!/usr/bin/env python3
"""Firmware build variants of the simulated device, checked with the independent Python SMP
client (smpc.py), not with fotagw's C libraries:

- single_image: CONFIG_MCUMGR_GRP_IMG_UPDATABLE_IMAGE_NUMBER=1. Image state and slot info show
  image 0 only; an upload naming image 1 is stored as image 0 slot 1, as Zephyr's
  img_mgmt_get_unused_slot_area_id() ignores the number with one updatable image.
- reset_no_answer: the reboot beats the answer to os reset (CONFIG_MCUMGR_GRP_OS_RESET_MS 0):
  nothing comes back, yet the device resets.
- bootloader_info = false: CONFIG_MCUMGR_GRP_OS_BOOTLOADER_INFO off: rc 8 like any command
  that is not built in.
"""
import simtest
import smpc
from simtest import QUICK, check, eq, wait_up

OP_READ = smpc.OP_READ


def t_single_image(ctx):
    img = ctx.mkimage(version="2.0.0", size=20000, seed=5)
    with ctx.start(1, QUICK + ["--set", "single_image=true"]) as sim:
        c = smpc.UdpClient(sim.port(0))
        eq(sorted(smpc.slots(c.state())), [(0, 0)], "image state before")
        si = c.request(OP_READ, 1, 6, {})["body"]
        eq([i["image"] for i in si["images"]], [0], "slot info")
        last = c.upload(img, image=1)
        eq(last.get("off"), len(img), "upload of 'image 1' completes")
        s = smpc.slots(c.state())
        eq(sorted(s), [(0, 0), (0, 1)], "image state after")
        eq(s[(0, 1)]["hash"], smpc.image_hash(img), "landed as image 0 slot 1")
        # with slot 1 taken by a pending image, there is no free slot, whatever the number
        c.state_write(hash=smpc.image_hash(img), confirm=False)
        r = c.upload(ctx.mkimage(version="2.0.1", size=20000, seed=6), image=1)
        eq(r.get("err"), {"group": 1, "rc": 9}, "no free slot")
        c.close()
    with ctx.start(1, QUICK) as sim:
        c = smpc.UdpClient(sim.port(0))
        si = c.request(OP_READ, 1, 6, {})["body"]
        eq([i["image"] for i in si["images"]], [0, 1], "two images by default")
        c.upload(ctx.mkimage(version="2.0.0", size=20000, seed=7), image=1)
        check((1, 1) in smpc.slots(c.state()), "image 1 lands as image 1 by default")
        c.close()


def t_reset_no_answer(ctx):
    with ctx.start(1, QUICK + ["--set", "reset_no_answer=true"]) as sim:
        c = smpc.UdpClient(sim.port(0))
        try:
            c.reset(timeout=1.0)
            check(False, "reset answered")
        except smpc.SmpTimeout:
            pass
        check(wait_up(c), "device did not come back")
        check("event: reset, device: fotagw-sim-0000" in sim.log(), "no reset")
        eq(c.echo("x"), {"r": "x"}, "answers again")
        c.close()


def t_bootloader_info_off(ctx):
    with ctx.start(1, QUICK + ["--set", "bootloader_info=false"]) as sim:
        c = smpc.UdpClient(sim.port(0))
        eq(c.request(OP_READ, 0, 8, {})["body"], {"rc": 8}, "bootloader info")
        eq(c.request(OP_READ, 0, 8, {"query": "mode"})["body"], {"rc": 8}, "mode")
        c.close()


if __name__ == "__main__":
    simtest.run([t_single_image, t_reset_no_answer, t_bootloader_info_off])
