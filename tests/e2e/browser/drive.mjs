// Drives headless Chromium for tests/e2e/browser.rs and prints what it saw as one JSON line on
// stdout. It measures; the Rust test decides what passes.
//
//   node drive.mjs page URL OUT_DIR USER_DATA_DIR
//     Loads URL, waits until #stats shows "fps" and "latency" and #picture shows a frame, and
//     writes two JPEG screenshots of #picture's box a second apart (OUT_DIR/first.jpg,
//     OUT_DIR/second.jpg) and one of the whole page (OUT_DIR/page.jpg).
//     Prints {stats, camera, box}.
//
//   node drive.mjs freshness URL GATE BEFORE AFTER USER_DATA_DIR
//     Loads URL, waits until the pixel at the centre of #picture is BEFORE (hex RGB), then
//     creates the file GATE (the camera then sends its last frame, AFTER) and samples that
//     pixel for WINDOW_MS. Prints {box, samples: [{ms, rgb}]}, ms counted from the gate.
//
// Every wait is bounded; a failure is a message on stderr and exit status 1.

import fs from "node:fs";
import zlib from "node:zlib";
import { chromium } from "playwright-core";

const WAIT_MS = 10_000;
// Starting Chromium is the slow part on a busy machine (.ci/run starts it once beforehand, so
// that its first start's cold caches are not paid here).
const LAUNCH_MS = 60_000;
const WINDOW_MS = 1_500;
const CHROMIUM = process.env.EDGECAM_CHROMIUM || "/usr/bin/chromium";
const ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--no-first-run",
  "--disable-background-networking",
];

async function launch(userDataDir) {
  // A persistent context is how Playwright takes a --user-data-dir of our choosing.
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: ARGS,
    viewport: { width: 800, height: 600 },
    timeout: LAUNCH_MS,
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(WAIT_MS);
  return { context, page };
}

// Resolves once #picture shows a decoded frame; then its box on the page.
async function pictureBox(page) {
  await page.waitForFunction(() => {
    const img = document.getElementById("picture");
    return img && img.naturalWidth > 0;
  });
  return page.locator("#picture").boundingBox();
}

// The RGB of a one-pixel PNG (Playwright's screenshot of a 1x1 clip): the first IDAT row's
// filter cannot change a first pixel (every predictor of it is 0), so it is the raw bytes.
function onePixel(png) {
  let at = 8;
  const idat = [];
  let channels = 3;
  while (at < png.length) {
    const len = png.readUInt32BE(at);
    const type = png.toString("latin1", at + 4, at + 8);
    const data = png.subarray(at + 8, at + 8 + len);
    if (type === "IHDR") {
      if (data[8] !== 8) throw new Error(`PNG bit depth ${data[8]}, expected 8`);
      channels = { 2: 3, 6: 4 }[data[9]];
      if (!channels) throw new Error(`PNG colour type ${data[9]}, expected RGB or RGBA`);
    } else if (type === "IDAT") {
      idat.push(data);
    }
    at += 12 + len;
  }
  const raw = zlib.inflateSync(Buffer.concat(idat));
  return [raw[1], raw[2], raw[3]];
}

const hex = (text) => [0, 2, 4].map((i) => parseInt(text.slice(i, i + 2), 16));
const near = (a, b) => a.reduce((sum, x, i) => sum + Math.abs(x - b[i]), 0) < 90;

async function pageMode([url, outDir, userDataDir]) {
  const { context, page } = await launch(userDataDir);
  try {
    await page.goto(url, { waitUntil: "domcontentloaded" });
    await page.waitForFunction(() => {
      const text = document.getElementById("stats").textContent;
      return text.includes("fps") && text.includes("latency");
    });
    const box = await pictureBox(page);
    await page.screenshot({ type: "jpeg", quality: 90, clip: box, path: `${outDir}/first.jpg` });
    // The picture is a moving one: a second later it must look different.
    await page.waitForTimeout(1000);
    await page.screenshot({ type: "jpeg", quality: 90, clip: box, path: `${outDir}/second.jpg` });
    await page.screenshot({ type: "jpeg", quality: 90, path: `${outDir}/page.jpg` });
    const stats = await page.locator("#stats").textContent();
    const camera = await page.locator("#camera").textContent();
    console.log(JSON.stringify({ stats, camera, box }));
  } finally {
    await context.close();
  }
}

async function freshnessMode([url, gate, before, after, userDataDir]) {
  const { context, page } = await launch(userDataDir);
  try {
    await page.goto(url, { waitUntil: "domcontentloaded" });
    const box = await pictureBox(page);
    const centre = {
      x: Math.floor(box.x + box.width / 2),
      y: Math.floor(box.y + box.height / 2),
      width: 1,
      height: 1,
    };
    const sample = async () => onePixel(await page.screenshot({ type: "png", clip: centre }));
    const deadline = Date.now() + WAIT_MS;
    let rgb = await sample();
    while (!near(rgb, hex(before))) {
      if (Date.now() > deadline) {
        throw new Error(`the picture never showed ${before}: last ${JSON.stringify(rgb)}`);
      }
      rgb = await sample();
    }
    fs.writeFileSync(gate, "");
    const start = performance.now();
    const samples = [];
    for (let ms = 0; ms < WINDOW_MS; ms = performance.now() - start) {
      samples.push({ ms: Math.round(ms), rgb: await sample() });
    }
    console.log(JSON.stringify({ box, samples }));
  } finally {
    await context.close();
  }
}

const [mode, ...rest] = process.argv.slice(2);
const modes = { page: pageMode, freshness: freshnessMode };
if (!modes[mode]) {
  console.error(`usage: node drive.mjs page|freshness ...; got ${JSON.stringify(mode)}`);
  process.exit(2);
}
try {
  await modes[mode](rest);
} catch (e) {
  console.error(e.stack || String(e));
  process.exit(1);
}
