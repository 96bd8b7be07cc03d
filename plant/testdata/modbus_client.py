#!/usr/bin/python3
"""Run Modbus/TCP operations with pymodbus and print one JSON result each.

usage: modbus_client.py HOST PORT UNIT OPS_JSON
OPS_JSON: [["rh", addr, count], ["ri", addr, count], ["rc", addr, count],
           ["rd", addr, count], ["wr", addr, value], ["wm", addr, [values]],
           ["wc", addr, true|false]]
Each result: {"ok": true, "values": [...]} or {"exception": code}
or {"error": "text"}; the transaction id pymodbus used is in "tid".
"""
import json
import sys

from pymodbus.client import ModbusTcpClient
from pymodbus.pdu import ExceptionResponse


def main():
    host, port, unit, ops = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4])
    client = ModbusTcpClient(host, port=port, timeout=10, retries=0)
    if not client.connect():
        print(json.dumps({"error": "connect failed"}))
        return 1
    calls = {
        "rh": lambda a, n: client.read_holding_registers(a, n, slave=unit),
        "ri": lambda a, n: client.read_input_registers(a, n, slave=unit),
        "rc": lambda a, n: client.read_coils(a, n, slave=unit),
        "rd": lambda a, n: client.read_discrete_inputs(a, n, slave=unit),
        "wr": lambda a, v: client.write_register(a, v, slave=unit),
        "wm": lambda a, v: client.write_registers(a, v, slave=unit),
        "wc": lambda a, v: client.write_coil(a, v, slave=unit),
    }
    out = []
    for op, addr, arg in ops:
        try:
            rr = calls[op](addr, arg)
        except Exception as e:  # noqa: BLE001 - reported to the test
            out.append({"error": repr(e)})
            continue
        if isinstance(rr, ExceptionResponse):
            out.append({"exception": rr.exception_code, "tid": rr.transaction_id})
        elif rr is None or not hasattr(rr, "function_code") or rr.isError():
            out.append({"error": repr(rr)})
        elif op in ("rh", "ri"):
            out.append({"ok": True, "values": list(rr.registers), "tid": rr.transaction_id})
        elif op in ("rc", "rd"):
            out.append({"ok": True, "values": [int(b) for b in rr.bits[:arg]], "tid": rr.transaction_id})
        else:
            out.append({"ok": True, "values": [], "tid": rr.transaction_id})
    client.close()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
