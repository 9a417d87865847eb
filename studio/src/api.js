// The HTTP API as the studio uses it: the token in the Authorization header (never a
// cookie), every error turned into a message the page can show.

const KEY = "collab.token";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export function token() {
  return localStorage.getItem(KEY);
}

export function signIn(value) {
  localStorage.setItem(KEY, value.trim());
}

export function signOut() {
  localStorage.removeItem(KEY);
}

/** The token's claims, read for display and for the page's own choices only: the
 * server checks the signature and decides every right itself. */
export function claims(value = token()) {
  try {
    const part = value.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const json = new TextDecoder().decode(Uint8Array.from(atob(part), (c) => c.charCodeAt(0)));
    return JSON.parse(json);
  } catch {
    return null;
  }
}

/** A read the server answers 503 (its read models are catching up, the database is
 * restarting) is asked again for a few seconds before the page shows the error. */
const RETRY_DELAYS = [250, 500, 1000, 2000, 2000, 2000];

export async function api(path, options = {}) {
  for (const delay of RETRY_DELAYS) {
    try {
      return await once(path, options);
    } catch (error) {
      if (error.status !== 503 || (options.method ?? "GET") !== "GET") throw error;
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
  return once(path, options);
}

async function once(path, { method = "GET", body, raw = false } = {}) {
  const headers = { Authorization: `Bearer ${token()}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, "the server cannot be reached");
  }
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      const payload = await response.json();
      if (payload && payload.message) message = payload.message;
    } catch {
      // not JSON (a proxy's page): the status line says enough
    }
    throw new ApiError(response.status, message);
  }
  return raw ? response : response.json();
}

export function wsBase() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/ws`;
}
