"""The shapesafe model zoo: functions that return blueprints, with their input specs."""
