#!/usr/bin/python3
"""Run Modbus/TCP operations with pymodbus and print one JSON result each.

usage: modbus_client.py HOST PORT UNIT OPS_JSON [CERT KEY CA]
OPS_JSON: [["rh", addr, count], ["ri", addr, count], ["rc", addr, count],
           ["rd", addr, count], ["wr", addr, value], ["wm", addr, [values]],
           ["wc", addr, true|false]]
Each result: {"ok": true, "values": [...]} or {"exception": code}
or {"error": "text"}; the transaction id pymodbus used is in "tid".

With CERT KEY CA: Modbus/TCP Security (Modbus over TLS), presenting CERT
(PEM, with its chain) and KEY, trusting the server only if CA (PEM)
vouches for its certificate (its name is not checked: an overlay endpoint
is an address). The frames are MBAP + PDU, as in the Modbus/TCP Security
specification: pymodbus's own TLS framer sends the PDU alone, so the
socket framer is named. pymodbus's asyncio client is used: its
synchronous TLS client waits with select(2) on the raw socket and misses
a response that TLS has already decrypted into its buffer.
"""
import asyncio
import json
import ssl
import sys

from pymodbus.client import AsyncModbusTlsClient, ModbusTcpClient
from pymodbus.framer.socket_framer import ModbusSocketFramer
from pymodbus.pdu import ExceptionResponse


def result(op, arg, rr):
    """One operation's result as JSON-ready dict."""
    if isinstance(rr, ExceptionResponse):
        return {"exception": rr.exception_code, "tid": rr.transaction_id}
    if rr is None or not hasattr(rr, "function_code") or rr.isError():
        return {"error": repr(rr)}
    if op in ("rh", "ri"):
        return {"ok": True, "values": list(rr.registers), "tid": rr.transaction_id}
    if op in ("rc", "rd"):
        return {"ok": True, "values": [int(b) for b in rr.bits[:arg]], "tid": rr.transaction_id}
    return {"ok": True, "values": [], "tid": rr.transaction_id}


def calls(client, unit):
    return {
        "rh": lambda a, n: client.read_holding_registers(a, n, slave=unit),
        "ri": lambda a, n: client.read_input_registers(a, n, slave=unit),
        "rc": lambda a, n: client.read_coils(a, n, slave=unit),
        "rd": lambda a, n: client.read_discrete_inputs(a, n, slave=unit),
        "wr": lambda a, v: client.write_register(a, v, slave=unit),
        "wm": lambda a, v: client.write_registers(a, v, slave=unit),
        "wc": lambda a, v: client.write_coil(a, v, slave=unit),
    }


def plain(host, port, unit, ops):
    client = ModbusTcpClient(host, port=port, timeout=10, retries=0)
    if not client.connect():
        return [{"error": "connect failed"}]
    call = calls(client, unit)
    out = []
    for op, addr, arg in ops:
        try:
            out.append(result(op, arg, call[op](addr, arg)))
        except Exception as e:  # noqa: BLE001 - reported to the test
            out.append({"error": repr(e)})
    client.close()
    return out


async def secure(host, port, unit, ops, cert, key, ca):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cafile=ca)
    # CA may be the gate's own certificate (otgate login's gate.pem),
    # issued by a site CA: trusted as it is.
    ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    ctx.load_cert_chain(certfile=cert, keyfile=key)
    client = AsyncModbusTlsClient(host, port=port, framer=ModbusSocketFramer, sslctx=ctx,
                                  server_hostname="", timeout=10, retries=0, reconnect_delay=0)
    try:
        await asyncio.wait_for(client.connect(), 15)
    except Exception as e:  # noqa: BLE001 - reported to the test
        return [{"error": "connect failed: " + repr(e)}]
    if not client.connected:
        return [{"error": "connect failed"}]
    call = calls(client, unit)
    out = []
    for op, addr, arg in ops:
        try:
            rr = await asyncio.wait_for(call[op](addr, arg), 15)
            out.append(result(op, arg, rr))
        except Exception as e:  # noqa: BLE001 - reported to the test
            out.append({"error": repr(e)})
    await client.close()
    return out


def main():
    if len(sys.argv) not in (5, 8):
        print(__doc__, file=sys.stderr)
        return 2
    host, port, unit, ops = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4])
    if len(sys.argv) == 8:
        out = asyncio.run(secure(host, port, unit, ops, *sys.argv[5:8]))
    else:
        out = plain(host, port, unit, ops)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
