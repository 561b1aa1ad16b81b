"""The six MAD tasks, registered through the same hook as any third-party plugin."""
import madbench


@madbench.hookimpl
def madbench_register_tasks(register):
    pass
