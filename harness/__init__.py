"""Process helpers shared by tests/, bench/ and proving/: run `vnode serve`, redis-server and a
throwaway PostgreSQL, wait for readiness with a deadline, stop, kill and restart them, and
measure the CPU and memory of process trees.

Nothing under vnode/ or vnode_sim/ imports this package (tests/unit/test_layering.py); it
imports vnode. Linux only where it reads /proc (usage.py, ServeProcess.worker_pids).
"""
