// Shared by the client's node tests: waiting for a condition without sleeping longer
// than needed (every wait is an upper bound for a broken build, not a timing).

export const tick = (ms = 5) => new Promise((r) => setTimeout(r, ms));

export async function until(check, what, ms = 2000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = check();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await tick(2);
  }
}
