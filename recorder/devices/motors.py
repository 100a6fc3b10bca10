"""Small servo-bus drivers over pyserial: Feetech STS/SCS protocol and Dynamixel protocol 2.0.

Our own packet encoders/decoders (no vendor SDK needed):

Feetech (STS3215, SO-100/SO-101)::

    instruction: FF FF id len instr params... chk     len = len(params) + 2
    status:      FF FF id len error params... chk     chk = ~(id + len + instr|error + sum(params)) & 0xFF

Dynamixel protocol 2.0 (XL330/XL430, Koch v1.1)::

    instruction: FF FF FD 00 id len_l len_h instr params... crc_l crc_h    len = len(params) + 3
    status:      FF FF FD 00 id len_l len_h 55 error params... crc_l crc_h
    CRC-16 (poly 0x8005, init 0, unreflected) over header..params; FF FF FD in the body is stuffed to FF FF FD FD.

Values are little-endian. Every failure names the port and the servo id.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod

from recorder.errors import DeviceError, DeviceNotConnectedError, DeviceTimeoutError

PING, READ, WRITE, SYNC_READ, SYNC_WRITE = 0x01, 0x02, 0x03, 0x82, 0x83
BROADCAST = 0xFE


# ------------------------------------------------------------------ Feetech
def feetech_checksum(body: bytes) -> int:
    return (~sum(body)) & 0xFF


def feetech_packet(servo_id: int, instr: int, params: bytes = b"") -> bytes:
    body = bytes([servo_id, len(params) + 2, instr]) + bytes(params)
    return b"\xff\xff" + body + bytes([feetech_checksum(body)])


# ------------------------------------------------------------------ Dynamixel 2.0
def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        crc = i << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x8005) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return table


_CRC_TABLE = _crc_table()


def dxl_crc(data: bytes) -> int:
    crc = 0
    for b in data:
        crc = ((crc << 8) ^ _CRC_TABLE[((crc >> 8) ^ b) & 0xFF]) & 0xFFFF
    return crc


def dxl_stuff(body: bytes) -> bytes:
    out = bytearray()
    for b in body:
        out.append(b)
        if b == 0xFD and out[-3:] == b"\xff\xff\xfd":
            out.append(0xFD)
    return bytes(out)


def dxl_unstuff(body: bytes) -> bytes:
    out = bytearray()
    i = 0
    while i < len(body):
        out.append(body[i])
        if (
            body[i] == 0xFD
            and len(out) >= 3
            and out[-3:] == b"\xff\xff\xfd"
            and i + 1 < len(body)
            and body[i + 1] == 0xFD
        ):
            i += 1  # skip the stuffed byte
        i += 1
    return bytes(out)


def dxl_packet(servo_id: int, instr: int, params: bytes = b"") -> bytes:
    body = dxl_stuff(bytes([instr]) + bytes(params))
    n = len(body) + 2
    head = b"\xff\xff\xfd\x00" + bytes([servo_id, n & 0xFF, n >> 8])
    pkt = head + body
    crc = dxl_crc(pkt)
    return pkt + bytes([crc & 0xFF, crc >> 8])


# ------------------------------------------------------------------ bus
class ServoBus(ABC):
    """A half-duplex servo bus on a serial port. Thread-safe (one transaction at a time)."""

    protocol = ""
    addr_bytes = 1

    def __init__(
        self, port: str, baudrate: int = 1_000_000, timeout_s: float = 0.05, retries: int = 1
    ) -> None:
        self.port = port
        self.baudrate = baudrate
        self.timeout_s = timeout_s
        self.retries = retries
        self._ser = None
        self._lock = threading.Lock()

    # -- port
    @property
    def is_open(self) -> bool:
        return self._ser is not None

    def open(self) -> None:
        import serial

        try:
            self._ser = serial.serial_for_url(
                self.port, baudrate=self.baudrate, timeout=self.timeout_s, write_timeout=1.0
            )
        except (serial.SerialException, OSError, ValueError) as err:
            raise DeviceError(
                f"servo bus {self.port}: cannot open ({err}): check the USB cable, the port name "
                "('vla-studio devices' lists ports) and that you are in the dialout group"
            ) from err

    def close(self) -> None:
        if self._ser is not None:
            try:
                self._ser.close()
            finally:
                self._ser = None

    def __enter__(self):
        self.open()
        return self

    def __exit__(self, *exc):
        self.close()

    # -- protocol hooks
    @abstractmethod
    def packet(self, servo_id: int, instr: int, params: bytes = b"") -> bytes: ...

    @abstractmethod
    def _read_status(self, servo_id: int, deadline: float) -> tuple[int, bytes]:
        """Read one status packet from ``servo_id``; return (error byte, params)."""

    def _addr(self, addr: int) -> bytes:
        return addr.to_bytes(self.addr_bytes, "little")

    def _len(self, n: int) -> bytes:
        return n.to_bytes(self.addr_bytes, "little")

    def describe_error(self, err: int) -> str:
        return f"error flags 0x{err:02x}"

    # -- transport
    def _require(self):
        if self._ser is None:
            raise DeviceNotConnectedError(f"servo bus {self.port} is not open: call connect() first")
        return self._ser

    def _read_exact(self, n: int, servo_id: int, deadline: float) -> bytes:
        ser = self._require()
        buf = bytearray()
        while len(buf) < n:
            if time.monotonic() > deadline:
                raise DeviceTimeoutError(
                    f"servo {servo_id} on {self.port} did not answer within {self.timeout_s * 1000:.0f} ms: "
                    "check its power, cable, id and the baud rate"
                )
            chunk = ser.read(n - len(buf))
            if chunk:
                buf += chunk
        return bytes(buf)

    def _sync_header(self, header: bytes, servo_id: int, deadline: float) -> None:
        window = bytearray()
        while bytes(window[-len(header) :]) != header:
            window += self._read_exact(1, servo_id, deadline)
            if len(window) > 512:
                raise DeviceError(f"servo {servo_id} on {self.port}: garbage on the bus: check the baud rate")

    def _transact(
        self, servo_id: int, instr: int, params: bytes, reply_ids: list[int]
    ) -> list[tuple[int, bytes]]:
        ser = self._require()
        pkt = self.packet(servo_id, instr, params)
        with self._lock:
            last_err: Exception | None = None
            for _attempt in range(self.retries + 1):
                ser.reset_input_buffer()
                ser.write(pkt)
                ser.flush()
                try:
                    replies = []
                    for rid in reply_ids:
                        deadline = time.monotonic() + self.timeout_s
                        err, data = self._read_status(rid, deadline)
                        replies.append((err, data))
                    break
                except DeviceError as e:  # includes timeouts
                    last_err = e
            else:
                assert last_err is not None
                raise last_err
        for rid, (err, _data) in zip(reply_ids, replies):
            if err & self.fatal_error_mask:
                raise DeviceError(
                    f"servo {rid} on {self.port} reports {self.describe_error(err)}: "
                    "power-cycle the arm and check for a blocked joint"
                )
        return replies

    fatal_error_mask = 0xFF

    # -- operations
    def ping(self, servo_id: int) -> bool:
        try:
            self._transact(servo_id, PING, b"", [servo_id])
            return True
        except DeviceTimeoutError:
            return False

    def read(self, servo_id: int, addr: int, size: int) -> int:
        ((_err, data),) = self._transact(servo_id, READ, self._addr(addr) + self._len(size), [servo_id])
        if len(data) != size:
            raise DeviceError(f"servo {servo_id} on {self.port}: expected {size} data bytes, got {len(data)}")
        return int.from_bytes(data, "little")

    def write(self, servo_id: int, addr: int, size: int, value: int) -> None:
        self._transact(servo_id, WRITE, self._addr(addr) + int(value).to_bytes(size, "little"), [servo_id])

    def sync_write(self, addr: int, size: int, values: dict[int, int]) -> None:
        params = bytearray(self._addr(addr) + self._len(size))
        for sid, v in values.items():
            params.append(sid)
            params += int(v).to_bytes(size, "little")
        self._transact(BROADCAST, SYNC_WRITE, bytes(params), [])

    def sync_read(self, addr: int, size: int, ids: list[int]) -> dict[int, int]:
        replies = self._transact(
            BROADCAST, SYNC_READ, self._addr(addr) + self._len(size) + bytes(ids), list(ids)
        )
        out = {}
        for sid, (_err, data) in zip(ids, replies):
            if len(data) != size:
                raise DeviceError(f"servo {sid} on {self.port}: expected {size} data bytes, got {len(data)}")
            out[sid] = int.from_bytes(data, "little")
        return out


class FeetechBus(ServoBus):
    protocol = "feetech"
    addr_bytes = 1
    fatal_error_mask = 0x2C  # overheat (0x04), overload (0x20), over-current (0x08)

    _ERRORS = {
        0x01: "input voltage",
        0x02: "angle limit",
        0x04: "overheat",
        0x08: "over-current",
        0x20: "overload",
    }

    def packet(self, servo_id: int, instr: int, params: bytes = b"") -> bytes:
        return feetech_packet(servo_id, instr, params)

    def describe_error(self, err: int) -> str:
        names = [n for bit, n in self._ERRORS.items() if err & bit]
        return " + ".join(names) or f"error 0x{err:02x}"

    def _read_status(self, servo_id: int, deadline: float) -> tuple[int, bytes]:
        self._sync_header(b"\xff\xff", servo_id, deadline)
        sid, n = self._read_exact(2, servo_id, deadline)
        rest = self._read_exact(n, servo_id, deadline)  # error, params..., checksum
        body = bytes([sid, n]) + rest[:-1]
        if feetech_checksum(body) != rest[-1]:
            raise DeviceError(
                f"servo {servo_id} on {self.port}: corrupted reply (bad checksum): "
                "check the cable and the baud rate"
            )
        if sid != servo_id:
            raise DeviceError(
                f"servo {servo_id} on {self.port}: reply came from id {sid}: two servos share an id?"
            )
        return rest[0], rest[1:-1]


class DynamixelBus(ServoBus):
    protocol = "dynamixel"
    addr_bytes = 2
    fatal_error_mask = 0x80  # hardware alert
    _ERRORS = {
        1: "result fail",
        2: "instruction error",
        3: "CRC error",
        4: "data range error",
        5: "data length error",
        6: "data limit error",
        7: "access error",
    }

    def packet(self, servo_id: int, instr: int, params: bytes = b"") -> bytes:
        return dxl_packet(servo_id, instr, params)

    def describe_error(self, err: int) -> str:
        if err & 0x80:
            return "a hardware alert (overload, overheat or voltage)"
        return self._ERRORS.get(err & 0x7F, f"error 0x{err:02x}")

    def _read_status(self, servo_id: int, deadline: float) -> tuple[int, bytes]:
        self._sync_header(b"\xff\xff\xfd\x00", servo_id, deadline)
        head = self._read_exact(3, servo_id, deadline)
        sid, n = head[0], head[1] | (head[2] << 8)
        rest = self._read_exact(n, servo_id, deadline)  # instr(0x55), error, params..., crc_l, crc_h
        pkt = b"\xff\xff\xfd\x00" + head + rest[:-2]
        if dxl_crc(pkt) != (rest[-2] | (rest[-1] << 8)):
            raise DeviceError(
                f"servo {servo_id} on {self.port}: corrupted reply (bad CRC): "
                "check the cable and the baud rate"
            )
        body = dxl_unstuff(rest[:-2])
        if body[0] != 0x55:
            raise DeviceError(f"servo {servo_id} on {self.port}: not a status packet (0x{body[0]:02x})")
        if sid != servo_id:
            raise DeviceError(
                f"servo {servo_id} on {self.port}: reply came from id {sid}: two servos share an id?"
            )
        err = body[1]
        if err & 0x7F:
            raise DeviceError(
                f"servo {servo_id} on {self.port} rejected the command: {self.describe_error(err)}"
            )
        return err, body[2:]


# ------------------------------------------------------------------ control tables
class MotorTable:
    """Addresses (addr, size) of the registers we use, and the position encoding."""

    def __init__(
        self, torque, goal, present, operating_mode=None, resolution: int = 4096, sign_bit: int | None = None
    ) -> None:
        self.torque, self.goal, self.present = torque, goal, present
        self.operating_mode = operating_mode  # (addr, size, value for position control)
        self.resolution = resolution
        self.sign_bit = sign_bit

    def decode_position(self, raw: int) -> int:
        size = self.present[1]
        if self.sign_bit is not None:  # sign-magnitude (Feetech)
            mag = raw & ((1 << self.sign_bit) - 1)
            return -mag if raw & (1 << self.sign_bit) else mag
        if raw >= 1 << (8 * size - 1):  # two's complement (Dynamixel)
            raw -= 1 << (8 * size)
        return raw

    def encode_position(self, value: int) -> int:
        size = self.goal[1]
        value = int(round(value))
        if self.sign_bit is not None:
            return (abs(value) | (1 << self.sign_bit)) if value < 0 else value
        return value & ((1 << (8 * size)) - 1)


STS3215 = MotorTable(torque=(40, 1), goal=(42, 2), present=(56, 2), operating_mode=(33, 1, 0), sign_bit=15)
XL_SERIES = MotorTable(torque=(64, 1), goal=(116, 4), present=(132, 4), operating_mode=(11, 1, 3))
