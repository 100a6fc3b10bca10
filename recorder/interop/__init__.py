"""Moving episodes in and out of the store in other projects' formats (LeRobotDataset v3.0 / v2.1)."""
