"""The Meta-World rig (``robot type = "metaworld"``): 50 Sawyer tasks with scripted experts, LeRobot's protocol.

``tasks`` needs neither mujoco nor metaworld; the devices import them when a rig builds them.
"""

from recorder.devices.metaworld.tasks import (
    DIFFICULTY_GROUPS,
    MT10,
    MT50,
    TASK_DESCRIPTIONS,
    TASK_LISTS,
    instruction,
    resolve_tasks,
    task_group,
)

__all__ = ["DIFFICULTY_GROUPS", "MT10", "MT50", "TASK_DESCRIPTIONS", "TASK_LISTS", "instruction", "resolve_tasks",
           "task_group"]
