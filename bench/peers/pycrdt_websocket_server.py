"""pycrdt-websocket 0.16.5 with its SQLite store, for the same-session comparison.

    python pycrdt_websocket_server.py PORT DB_PATH

Runs in the benchmark's own virtual environment (bench/.work/pycrdt-websocket), never
in the project's. Every room persists its updates to SQLite (after broadcasting them,
which is how pycrdt-websocket works).
"""

import asyncio
import sys

import uvicorn
from pycrdt.store import SQLiteYStore
from pycrdt.websocket import ASGIServer, WebsocketServer, YRoom


class Store(SQLiteYStore):
    db_path = sys.argv[2]


class Server(WebsocketServer):
    async def get_room(self, name: str) -> YRoom:
        if name not in self.rooms:
            self.rooms[name] = YRoom(ready=True, ystore=Store(path=name), log=self.log)
        room = self.rooms[name]
        await self.start_room(room)
        return room


async def main() -> None:
    websocket_server = Server(auto_clean_rooms=False)
    config = uvicorn.Config(
        ASGIServer(websocket_server), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning"
    )
    async with websocket_server:
        await uvicorn.Server(config).serve()


asyncio.run(main())
