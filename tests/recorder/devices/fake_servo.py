"""A fake servo bus for driver tests: speaks Feetech or Dynamixel 2.0 on the far end of a pty pair.

Written independently of recorder.devices.motors (its own parser and checksums), so the tests check the
drivers against the protocols, not against themselves. Each servo has a 256/512-byte control table.
Knobs: ``silent`` (ids that never answer), ``corrupt`` (ids whose replies get a bad checksum), and
``follow_goal`` (present position jumps to the goal when torque is on).
"""

from __future__ import annotations

import os
import select
import threading
import tty

FEETECH = dict(torque=40, goal=42, goal_size=2, present=56, present_size=2)
DYNAMIXEL = dict(torque=64, goal=116, goal_size=4, present=132, present_size=4)


def _crc16(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x8005) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


class FakeServoBus:
    def __init__(self, protocol: str, ids=(1, 2, 3, 4, 5, 6)) -> None:
        self.protocol = protocol
        self.regs = FEETECH if protocol == "feetech" else DYNAMIXEL
        self.mem = {i: bytearray(512) for i in ids}
        self.silent: set[int] = set()
        self.corrupt: set[int] = set()
        self.follow_goal = True
        self.received: list[tuple[int, int, bytes]] = []  # (id, instr, params)
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        tty.setraw(self._master)
        self.port = os.ttyname(self._slave)
        self._stop = threading.Event()
        self._buf = bytearray()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    # -- helpers for tests
    def set_position(self, sid: int, value: int) -> None:
        size = self.regs["present_size"]
        if self.protocol == "feetech" and value < 0:
            raw = (-value) | 0x8000
        else:
            raw = value & ((1 << (8 * size)) - 1)
        self.mem[sid][self.regs["present"] : self.regs["present"] + size] = raw.to_bytes(size, "little")

    def goal(self, sid: int) -> int:
        a, n = self.regs["goal"], self.regs["goal_size"]
        return int.from_bytes(self.mem[sid][a : a + n], "little")

    def torque(self, sid: int) -> int:
        return self.mem[sid][self.regs["torque"]]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        os.close(self._master)
        os.close(self._slave)

    # -- wire
    def _run(self) -> None:
        while not self._stop.is_set():
            r, _, _ = select.select([self._master], [], [], 0.02)
            if not r:
                continue
            try:
                self._buf += os.read(self._master, 4096)
            except OSError:
                return
            while self._parse_one():
                pass

    def _parse_one(self) -> bool:
        b = self._buf
        if self.protocol == "feetech":
            i = b.find(b"\xff\xff")
            if i < 0 or len(b) < i + 4:
                return False
            n = b[i + 3]
            end = i + 4 + n
            if len(b) < end:
                return False
            sid, instr, params, chk = b[i + 2], b[i + 4], bytes(b[i + 5 : end - 1]), b[end - 1]
            ok = ((~sum(b[i + 2 : end - 1])) & 0xFF) == chk
        else:
            i = b.find(b"\xff\xff\xfd\x00")
            if i < 0 or len(b) < i + 7:
                return False
            n = b[i + 5] | (b[i + 6] << 8)
            end = i + 7 + n
            if len(b) < end:
                return False
            sid, instr = b[i + 4], b[i + 7]
            params = bytes(b[i + 8 : end - 2]).replace(b"\xff\xff\xfd\xfd", b"\xff\xff\xfd")
            ok = _crc16(bytes(b[i : end - 2])) == (b[end - 2] | (b[end - 1] << 8))
        del self._buf[:end]
        if ok:
            self._handle(sid, instr, params)
        return True

    def _reply(self, sid: int, data: bytes = b"", error: int = 0) -> None:
        if sid in self.silent or sid not in self.mem:
            return
        if self.protocol == "feetech":
            body = bytes([sid, len(data) + 2, error]) + data
            pkt = b"\xff\xff" + body + bytes([(~sum(body)) & 0xFF])
        else:
            body = bytes([0x55, error]) + data
            n = len(body) + 2
            pkt = b"\xff\xff\xfd\x00" + bytes([sid, n & 0xFF, n >> 8]) + body
            crc = _crc16(pkt)
            pkt += bytes([crc & 0xFF, crc >> 8])
        if sid in self.corrupt:
            pkt = pkt[:-1] + bytes([pkt[-1] ^ 0x5A])
        os.write(self._master, pkt)

    def _addr_len(self, params: bytes):
        if self.protocol == "feetech":
            return params[0], params[1], params[2:]
        return params[0] | (params[1] << 8), params[2] | (params[3] << 8), params[4:]

    def _store(self, sid: int, addr: int, data: bytes) -> None:
        mem = self.mem[sid]
        mem[addr : addr + len(data)] = data
        r = self.regs
        if self.follow_goal and addr == r["goal"] and mem[r["torque"]]:
            mem[r["present"] : r["present"] + r["present_size"]] = data[: r["present_size"]].ljust(
                r["present_size"], b"\0"
            )

    def _handle(self, sid: int, instr: int, params: bytes) -> None:
        self.received.append((sid, instr, params))
        if instr == 0x01:  # ping
            self._reply(sid)
        elif instr == 0x02:  # read
            addr, n, _ = self._addr_len(params)
            if sid in self.mem:
                self._reply(sid, bytes(self.mem[sid][addr : addr + n]))
        elif instr == 0x03:  # write
            if self.protocol == "feetech":
                addr, data = params[0], params[1:]
            else:
                addr, data = params[0] | (params[1] << 8), params[2:]
            if sid in self.mem:
                self._store(sid, addr, data)
                self._reply(sid)
        elif instr == 0x83:  # sync write
            addr, n, rest = self._addr_len(params)
            for k in range(0, len(rest), n + 1):
                tid = rest[k]
                if tid in self.mem:
                    self._store(tid, addr, rest[k + 1 : k + 1 + n])
        elif instr == 0x82:  # sync read
            addr, n, ids = self._addr_len(params)
            for tid in ids:
                if tid in self.mem:
                    self._reply(tid, bytes(self.mem[tid][addr : addr + n]))
