"""`vla-studio devices`: list cameras (OpenCV with modes, RealSense serials) and serial ports;
`vla-studio devices calibrate`: calibrate a servo arm (saved under <home>/calibration/<id>.json)."""

from __future__ import annotations

import json

from recorder.errors import ConfigError

ARM_TYPES = [
    "so101_follower",
    "so100_follower",
    "koch_follower",
    "so101_leader",
    "so100_leader",
    "koch_leader",
]


def register(sub) -> None:
    p = sub.add_parser(
        "devices",
        help="list cameras and serial ports; calibrate arms",
        description="List OpenCV cameras (with the modes they accept), RealSense serials and "
        "serial ports. Works with nothing plugged in.",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(func=_list)
    dsub = p.add_subparsers(dest="devices_command", metavar="ACTION")
    c = dsub.add_parser("calibrate", help="calibrate a servo arm (middle pose, then the range of motion)")
    c.add_argument("--type", required=True, choices=ARM_TYPES, help="arm type")
    c.add_argument("--port", required=True, help="serial port, e.g. /dev/ttyACM0")
    c.add_argument("--id", required=True, help="arm id (names the calibration file)")
    c.add_argument("--seconds", type=float, default=15.0, help="how long to record the range of motion")
    c.set_defaults(func=_calibrate)


def discover() -> dict:
    """Everything we can find; each part is empty when nothing is there."""
    from recorder.devices.opencv_camera import list_opencv_cameras
    from recorder.devices.realsense import list_realsense

    try:
        from serial.tools import list_ports

        ports = [
            {"port": p.device, "description": p.description or "", "hwid": p.hwid or ""}
            for p in sorted(list_ports.comports(), key=lambda p: p.device)
        ]
    except ImportError:  # pragma: no cover - pyserial is a dependency
        ports = []
    return {"opencv": list_opencv_cameras(), "realsense": list_realsense(), "serial": ports}


def _list(args) -> int:
    found = discover()
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    print("OpenCV cameras:")
    if not found["opencv"]:
        print("  (none found)")
    for cam in found["opencv"]:
        modes = (
            ", ".join(f"{m['width']}x{m['height']}@{m['fps']:g}" for m in cam["modes"]) or "no common mode"
        )
        print(f"  {cam['source']}  [{cam['backend']}]  {modes}")
    print("RealSense cameras:")
    if not found["realsense"]:
        print("  (none found)")
    for dev in found["realsense"]:
        print(f"  serial {dev['serial']}  {dev['name']}  firmware {dev['firmware']}")
    print("Serial ports (servo buses):")
    if not found["serial"]:
        print("  (none found)")
    for p in found["serial"]:
        print(f"  {p['port']}  {p['description']}  {p['hwid']}")
    print("The simulated rig ('--rig sim') needs none of these.")
    return 0


def _calibrate(args) -> int:
    from recorder.devices.arms import calibrate_arm
    from recorder.devices.configs import config_from_dict

    kind = "teleop" if args.type.endswith("leader") else "robot"
    cfg = config_from_dict(kind, {"type": args.type, "port": args.port, "id": args.id})
    if args.seconds <= 0:
        raise ConfigError("--seconds must be positive")

    def wait_for_middle() -> None:
        input(
            f"Move '{args.id}' to the middle of its range (upper arm up, forearm level, gripper half open), "
            "then press Enter..."
        )
        print(
            f"Now move every joint through its whole range, gripper fully open and closed ({args.seconds:g} s)."
        )

    cal = calibrate_arm(
        args.type, cfg, home=args.home, wait_for_middle=wait_for_middle, record_s=args.seconds
    )
    for name, j in cal.joints.items():
        print(f"  {name:14s} id {j.id}  offset {j.homing_offset:6d}  range {j.range_min}..{j.range_max}")
    print(f"saved {args.home / 'calibration' / (args.id + '.json')}")
    return 0
