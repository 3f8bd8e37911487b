// The web page in headless Chromium: signs in (when the server has
// tokens), lists the jobs, follows one live, pauses and resumes it, and
// checks that nothing on the page broke its Content-Security-Policy.
//
//   node tests/browser/page.mjs BASE_URL JOB_ID SCREENSHOT_DIR [TOKEN]
//
// Prints one line per check ("PASS ..." / "FAIL ..."); exits 1 on a failure.
import { chromium } from "playwright-core";

const [base, job, shots, token] = process.argv.slice(2);
const failures = [];
const check = (what, ok, detail = "") => {
  console.log(`${ok ? "PASS" : "FAIL"} ${what}${ok || !detail ? "" : `: ${detail}`}`);
  if (!ok) failures.push(what);
};

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const problems = [];
  page.on("console", (m) => { if (m.type() === "error") problems.push(m.text()); });
  page.on("pageerror", (e) => problems.push(String(e)));
  page.on("response", (r) => { if (r.status() >= 400 && !r.url().endsWith("/login")) problems.push(`${r.status()} ${r.url()}`); });

  await page.goto(base + "/");
  if (token) {
    check("the login form is shown first", await page.locator("input[name=token]").isVisible());
    await page.fill("input[name=token]", "not-the-token-000000");
    await page.click("button[type=submit]");
    await page.waitForSelector("text=not valid", { timeout: 15000 })
      .then(() => check("a wrong token is refused", true), (e) => check("a wrong token is refused", false, String(e)));
    await page.fill("input[name=token]", token);
    await Promise.all([page.waitForURL(base + "/"), page.click("button[type=submit]")]);
    await page.screenshot({ path: `${shots}/signed-in.png`, fullPage: true });
    // The form's own 401s (before, and for the wrong token) were expected.
    problems.length = 0;
  }
  await page.waitForSelector(".job", { timeout: 15000 });
  check("the jobs are listed", (await page.locator(".job").count()) >= 1);
  check("sign-out shows exactly when there is a sign-in", (await page.isVisible("#signout")) === Boolean(token));

  await page.click(`.job:has-text("${job}")`);
  await page.waitForSelector("#detail h2", { timeout: 15000 });
  check("the job's detail opens", (await page.textContent("#detail h2")).includes(job));
  const stepOf = async () => Number(((await page.textContent("#live")) || "").match(/step (\d+)/)?.[1] || -1);
  const first = await stepOf();
  await page.waitForFunction((s) => {
    const m = document.querySelector("#live")?.textContent.match(/step (\d+)/);
    return m && Number(m[1]) > s;
  }, first, { timeout: 15000 }).then(() => check("progress moves live", true),
                                     (e) => check("progress moves live", false, String(e)));

  await page.click("button:has-text('Pause')");
  await page.waitForSelector("#detail .status.paused", { timeout: 15000 })
    .then(() => check("Pause pauses", true), (e) => check("Pause pauses", false, String(e)));
  await page.screenshot({ path: `${shots}/paused.png`, fullPage: true });
  await page.click("button:has-text('Resume')");
  await page.waitForSelector("#detail .status.running", { timeout: 15000 })
    .then(() => check("Resume resumes", true), (e) => check("Resume resumes", false, String(e)));
  await page.screenshot({ path: `${shots}/running.png`, fullPage: true });

  // The chart: ticks on both axes, the value under the pointer, a log scale.
  await page.waitForSelector("#detail .history-chart svg.chart polyline", { timeout: 20000 })
    .then(() => check("the history chart is drawn", true), (e) => check("the history chart is drawn", false, String(e)));
  const labels = async () => (await page.locator("#detail .history-chart svg.chart text:not(.tip):not(.label)").allTextContents()).join(" ");
  const linear = await labels();
  check("the chart has tick labels on both axes", linear.split(" ").length >= 6, linear);
  const box = await page.locator("#detail .history-chart svg.chart").boundingBox();
  await page.mouse.move(box.x + box.width * 0.7, box.y + box.height / 2);
  const tip = await page.textContent("#detail .history-chart svg.chart .tip");
  check("hovering shows a step and its value", /^step \d+: loss /.test(tip || ""), tip);
  await page.screenshot({ path: `${shots}/chart.png`, fullPage: true });
  await page.check("#detail .history-chart .chart-head input[type=checkbox]");
  await page.waitForFunction((before) => {
    const now = [...document.querySelectorAll("#detail .history-chart svg.chart text:not(.tip):not(.label)")].map((t) => t.textContent).join(" ");
    return now !== before;
  }, linear, { timeout: 15000 }).then(() => check("the log scale redraws the axis", true),
                                      (e) => check("the log scale redraws the axis", false, String(e)));
  await page.screenshot({ path: `${shots}/chart-log.png`, fullPage: true });

  // Resources of the running job: the latest sample in words, and a chart.
  await page.waitForSelector("#detail .resource-chart svg.chart polyline", { timeout: 20000 })
    .then(() => check("the job's resource use is charted", true), (e) => check("the job's resource use is charted", false, String(e)));
  const used = await page.textContent("#detail .resources");
  check("the latest resource sample is described", /CPU .* memory .* threads in \d+ processes .* no GPU/.test(used || ""), used);
  const detail = await page.textContent("#detail");
  check("no absent part shows as 'null'", !/\bnull\b/.test(detail || ""), detail);
  // The disk in the header.
  const disk = await page.textContent("#disk");
  check("the disk's use is in the header", /^disk [\d.]+% used · [\d.]+ GiB free · jobs [\d.]+ GiB$/.test(disk || ""), disk);

  check("a run trainbox did not start shows as external",
    (await page.locator(".job:has-text('someone-else') .status.external").count()) === 1);
  check("an empty model/ offers no model download", (await page.textContent("#detail")).includes("No model yet."));

  // The start form, built from the server's recipes, validates at the field.
  const before = await page.locator(".job").count();
  check("the start form offers the server's recipes",
    (await page.locator("#start select[name=recipe] option").allTextContents()).join(",") === "count");
  await page.fill("#start input[name=param-note]", "NOT OK!");
  await page.click("#start button[type=submit]");
  await page.waitForTimeout(500);
  check("a param outside its pattern is refused at the field",
    (await page.locator("#start input[name=param-note]:invalid").count()) === 1 && (await page.locator(".job").count()) === before);
  await page.fill("#start input[name=param-note]", "second");
  await page.fill("#start input[name=param-steps]", "5");
  await page.screenshot({ path: `${shots}/start-form.png`, fullPage: true });
  await page.click("#start button[type=submit]");
  await page.waitForFunction((n) => document.querySelectorAll(".job").length > n, before, { timeout: 15000 })
    .then(() => check("a valid form starts a job", true), (e) => check("a valid form starts a job", false, String(e)));

  // Compare the two counting jobs: both curves, and a row each.
  // (The list is rebuilt every few seconds: a tick that lands on a row
  // being replaced is given again, as a user would.)
  const running = page.locator(".job:has(.status.running)");
  for (let tries = 0; tries < 5 && (await page.locator("input.compare-pick:checked").count()) < 2; tries++) {
    for (const n of [0, 1]) {
      const pick = running.nth(n).locator("input.compare-pick");
      if (!(await pick.isChecked())) await pick.check().catch(() => {});
    }
  }
  await page.waitForSelector("#compare:not([hidden]) svg.chart", { timeout: 15000 })
    .then(() => check("ticking two jobs compares them", true),
          async (e) => check("ticking two jobs compares them", false, `${e}; picked ${await page.locator("input.compare-pick:checked").count()}; error: ${await page.textContent("#error")}`));
  check("the comparison draws a curve a job", (await page.locator("#compare svg.chart polyline").count()) === 2);
  check("the comparison's table has a row a job", (await page.locator("#compare table tr").count()) === 3);
  check("the comparison names the metric's direction", (await page.textContent("#compare")).includes("lower is better"));
  await page.screenshot({ path: `${shots}/compare.png`, fullPage: true });
  await running.nth(0).locator("input.compare-pick").uncheck();
  await page.waitForSelector("#compare[hidden]", { state: "attached", timeout: 15000 })
    .then(() => check("one job left is no comparison", true), (e) => check("one job left is no comparison", false, String(e)));
  await running.nth(1).locator("input.compare-pick").uncheck();

  // A download shows in the audit panel.
  await page.request.get(base + "/api/training/" + job + "/download/logs");
  await page.waitForSelector(`#audit:not([hidden]) td:has-text("${job}")`, { timeout: 15000 })
    .then(() => check("the download audit lists the download", true), (e) => check("the download audit lists the download", false, String(e)));
  await page.screenshot({ path: `${shots}/audit.png`, fullPage: true });

  // Cancel the job just started, then delete it (confirming the dialog).
  page.on("dialog", (d) => d.accept());
  await page.click(".job >> nth=0");
  await page.waitForSelector("#detail button:has-text('Cancel'):not([disabled])", { timeout: 15000 });
  check("a running job cannot be deleted", await page.isDisabled("#detail button:has-text('Delete job')"));
  await page.click("#detail button:has-text('Cancel')");
  await page.waitForSelector("#detail .status.cancelled", { timeout: 20000 })
    .then(() => check("Cancel cancels", true), (e) => check("Cancel cancels", false, String(e)));
  await page.click("#detail button:has-text('Delete job')");
  await page.waitForFunction((n) => document.querySelectorAll(".job").length === n, before, { timeout: 15000 })
    .then(() => check("Delete job removes it, after a confirmation", true),
          (e) => check("Delete job removes it, after a confirmation", false, String(e)));

  // What a cross-site page could not do, the page itself still does.
  const violations = problems.filter((p) => /Content Security Policy|Refused to/.test(p));
  check("no Content-Security-Policy violations", violations.length === 0, violations.join(" | "));
  check("no script errors", problems.length === 0, problems.join(" | "));
} finally {
  await browser.close();
}
process.exit(failures.length ? 1 : 0);
