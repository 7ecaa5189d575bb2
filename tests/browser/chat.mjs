// Drives the chat page in Debian's headless Chromium as a person would:
// type a name, chat, whisper, and see the page report the lost connection.
//
//   node tests/browser/chat.mjs <page url> [screenshot dir]
//
// The other side of the conversation is a TCP member that the calling test
// plays (its name is `bob`): it says `hi ana` and whispers `psst from nc`
// once it has read `ana: hello from the browser`, and shuts the server down
// once it has read `priv(ana): psst from the browser`. Prints what the page
// showed, one record a line (`<key>\t<value>`; a log line is
// `line\t<class>\t<text>`), and exits 0 when every step happened.
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [url, shots] = process.argv.slice(2);
if (!url) {
  console.error("usage: node chat.mjs <page url> [screenshot dir]");
  process.exit(2);
}
const STEP_TIMEOUT = 10_000;

// A fresh, empty profile for every run; nothing of Google's is contacted.
const profile = mkdtempSync(join(tmpdir(), "chatcore-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
  ],
  // The wss test serves a self-signed certificate made at start.
  ignoreHTTPSErrors: true,
  viewport: { width: 390, height: 740 }, // a phone
});
const result = { steps: [] };
let failed = false;
try {
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(STEP_TIMEOUT);
  const step = (name) => result.steps.push(name);
  const waitLine = (text) =>
    page.waitForFunction(
      (t) => [...document.querySelectorAll("#log > *")].some((e) => e.textContent === t),
      text,
    );
  const say = async (text) => {
    await page.locator("#line").pressSequentially(text);
    await page.locator("#line").press("Enter");
  };

  await page.goto(url);
  await waitLine("NAME");
  step("asked for a name");
  await page.locator("#line").waitFor({ state: "visible" });
  await say("ana");
  await waitLine("Welcome to the chat, ana!");
  step("joined");
  await say("hello from the browser");
  await waitLine("priv(bob): psst from nc");
  step("got a whisper");
  await say("\\w bob psst from the browser");
  if (shots) await page.screenshot({ path: join(shots, "chat.png") });
  await page.locator("#banner.shown").waitFor({ state: "visible" });
  step("saw the connection lost");
  if (shots) await page.screenshot({ path: join(shots, "lost.png") });

  Object.assign(
    result,
    await page.evaluate(() => {
      const log = document.getElementById("log");
      const rows = [...log.children];
      const last = rows[rows.length - 1];
      return {
        lines: rows.map((e) => e.textContent),
        classes: rows.map((e) => e.className),
        banner: document.getElementById("banner").textContent.trim(),
        state: document.getElementById("state").textContent,
        newestVisible:
          !last || last.getBoundingClientRect().bottom <= log.getBoundingClientRect().bottom + 1,
        fitsWidth: document.documentElement.scrollWidth <= window.innerWidth,
        inputDisabled: document.getElementById("line").disabled,
      };
    }),
  );
} catch (error) {
  failed = true;
  result.error = String(error);
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
for (const name of result.steps) console.log(`step\t${name}`);
(result.lines ?? []).forEach((text, i) => console.log(`line\t${result.classes[i]}\t${text}`));
for (const key of ["banner", "state", "newestVisible", "fitsWidth", "inputDisabled", "error"]) {
  if (key in result) console.log(`${key}\t${result[key]}`);
}
process.exit(failed ? 1 : 0);
