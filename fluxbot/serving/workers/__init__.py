"""Workers: one per device, each running the batches the scheduler hands it.

`base` is the interface the scheduler talks to; `local` runs a pipeline replica in this process
(`device_thread`, `device_memory`); `ray_backend` runs one on another host; `eta` is the speed
model both use for ETAs.
"""
