"""`edgefleet demo`: every finished capability, end to end, on this machine.

The demo is a list of stories sharing one ``DemoRun`` (a real controller, real agent
processes, the real CLI). Each story module has ``story(demo: DemoRun) -> None`` and raises
``DemoFailed`` when what it shows does not hold.
"""
