"""IPython kernel configuration for the project's .venv: silence the plain-TCP notice of ipykernel.

ipykernel 7 logs "Kernel is running over TCP without encryption ..." at every kernel start over TCP
(IPKernelApp.init_sockets), which is every notebook that jupyter-book, nbmake or papermill executes:
they launch kernels through jupyter_client, which uses TCP on 127.0.0.1 and provisions no CurveZMQ
keys unless KernelManager.transport_encryption is configured, and none of these tools passes that
configuration on. The kernels here only ever listen on the loopback interface of the machine that
runs them, so the notice says nothing actionable; this filter drops exactly that record and keeps every
other kernel message. The Makefile copies this file to .venv/etc/ipython/, where IPython looks for
the configuration of the environment's kernels (sys.prefix/etc/ipython).
"""

import logging


class _PlainTcpNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "running over TCP without encryption" not in record.getMessage()


logging.getLogger("IPKernelApp").addFilter(_PlainTcpNotice())
