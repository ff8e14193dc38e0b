// check.mjs opens the lab's Temporal Web UI in headless Chromium (Debian's
// /usr/bin/chromium, driven by playwright-core) and checks what an on-call
// engineer sees there: a release waiting at a gate (its summary, the
// details table with a row per region, the gate's timer summary), and, in
// the workflow list, a release that did not ship marked Failed and one that
// shipped marked Completed. Every page visited is saved as a screenshot.
// integration/webui_test.go runs it; it can also run on its own:
//
//   KEELSON_WEBUI_GATE_ID=release-demo-1.0.0 KEELSON_WEBUI_GATE_APP=demo \
//   KEELSON_WEBUI_GATE_VERSION=1.0.0 KEELSON_WEBUI_ROLLEDBACK_ID=... \
//   KEELSON_WEBUI_SUCCEEDED_ID=... node integration/webui/check.mjs
//
// It prints one line per check ("ok: ..." or "FAIL: ..."), goes on after a
// failed check so that one run shows all of them, and exits 1 if any failed
// (2 if it could not run at all).
import { chromium } from 'playwright-core';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const env = (name, def) => {
	const v = process.env[name];
	if (v !== undefined && v !== '') return v;
	if (def === undefined) {
		console.error(`check: ${name} is not set`);
		process.exit(2);
	}
	return def;
};

const base = env('KEELSON_WEBUI_URL', 'http://localhost:8233').replace(/\/+$/, '');
const namespace = env('KEELSON_WEBUI_NAMESPACE', 'default');
const gateID = env('KEELSON_WEBUI_GATE_ID');
const gateApp = env('KEELSON_WEBUI_GATE_APP');
const gateVersion = env('KEELSON_WEBUI_GATE_VERSION');
const gateName = env('KEELSON_WEBUI_GATE_NAME', 'promote-to-rest');
// "wave region" pairs, comma separated: the rows the details table must have.
const gateRows = env('KEELSON_WEBUI_GATE_ROWS', 'canary us-east-1,rest eu-west-1,rest ap-southeast-1')
	.split(',').map((s) => s.trim().split(/\s+/)).filter((r) => r.length === 2);
const rolledBackID = env('KEELSON_WEBUI_ROLLEDBACK_ID');
const succeededID = env('KEELSON_WEBUI_SUCCEEDED_ID');
const out = resolve(env('KEELSON_WEBUI_OUT', 'webui-screenshots'));
const executablePath = env('KEELSON_CHROMIUM', '/usr/bin/chromium');
const timeout = Number(env('KEELSON_WEBUI_TIMEOUT_MS', '30000'));

mkdirSync(out, { recursive: true });
const failures = [];
const ok = (msg) => console.log(`ok: ${msg}`);
const fail = (msg) => {
	failures.push(msg);
	console.log(`FAIL: ${msg}`);
};
// check runs one check; an exception (a locator that timed out) is its failure.
const check = async (what, fn) => {
	try {
		const msg = await fn();
		ok(msg ? `${what}: ${msg}` : what);
	} catch (e) {
		fail(`${what}: ${String(e.message || e).split('\n')[0]}`);
	}
};
const oneLine = (s) => s.replace(/\s+/g, ' ').trim();
const short = (s, n = 300) => (s.length > n ? s.slice(0, n - 3) + '...' : s);
const escapeRe = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

let shots = 0;
const screenshot = async (page, name) => {
	shots++;
	const path = join(out, `${String(shots).padStart(2, '0')}-${name}.png`);
	try {
		await page.screenshot({ path, fullPage: true });
		console.log(`screenshot: ${path}`);
	} catch (e) {
		fail(`screenshot ${path}: ${e.message}`);
	}
};

// A fresh profile for every run: nothing of an earlier run (cookies, saved
// views, local storage of the UI's settings) can change what is seen.
const profile = mkdtempSync(join(tmpdir(), 'keelson-webui-'));
let context;
try {
	context = await chromium.launchPersistentContext(profile, {
		executablePath,
		headless: true,
		viewport: { width: 1440, height: 1000 },
		timezoneId: 'UTC',
		args: [
			'--no-sandbox',
			'--disable-gpu',
			'--disable-quic',
			'--no-first-run',
			'--disable-background-networking',
			'--disable-component-update',
			'--disable-sync',
		],
	});
} catch (e) {
	console.error(`check: cannot start Chromium at ${executablePath}: ${e.message}`);
	rmSync(profile, { recursive: true, force: true });
	process.exit(2);
}
context.setDefaultTimeout(timeout);
const page = context.pages()[0] || (await context.newPage());

// The markdown of a summary or details pane renders in an iframe (the UI's
// /render) right under the pane's heading: the nearest block that holds
// both the heading and an iframe holds the pane's iframe.
const pane = (heading) =>
	page.frameLocator(`xpath=//h3[normalize-space()="${heading}"]/ancestor::div[.//iframe][1]//iframe`).first();

try {
	// 1. The release at the gate: its history first (the page a link from
	// `keelson release start` opens).
	const wfURL = `${base}/namespaces/${encodeURIComponent(namespace)}/workflows/${encodeURIComponent(gateID)}`;
	await page.goto(wfURL);
	await check(`${gateID}: the release page opens with its id as heading`, async () => {
		await page.getByRole('heading', { name: gateID }).first().waitFor();
	});
	await check(`${gateID}: shows Running`, async () => {
		await page.getByText('Running', { exact: true }).first().waitFor();
	});
	const timerRe = new RegExp(`^gate ${escapeRe(gateName)}: waiting for approval until \\S+`);
	await check(`${gateID}: the gate's timer summary in the history (timeline or event list)`, async () => {
		const t = page.getByText(timerRe).first();
		await t.waitFor();
		// The timeline draws it as SVG text: textContent, not innerText.
		return `"${oneLine((await t.textContent()) || '')}"`;
	});
	await screenshot(page, 'gate-history');

	// 2. Its User Metadata tab: the static summary and the current details.
	await check(`${gateID}: the User Metadata tab opens`, async () => {
		await page.getByRole('tab', { name: /User Metadata/ }).click();
		await page.waitForURL(/\/user-metadata/);
		await page.getByRole('heading', { name: 'Summary', exact: true }).waitFor();
	});
	await check(`${gateID}: the summary names application ${gateApp} and version ${gateVersion}`, async () => {
		const body = pane('Summary').locator('body');
		await body.waitFor();
		let text = '';
		for (let i = 0; i < 20; i++) {
			text = oneLine(await body.innerText());
			if (text.includes(gateApp) && text.includes(gateVersion)) return `"${short(text)}"`;
			await page.waitForTimeout(500);
		}
		throw new Error(`the Summary pane reads "${short(text)}"`);
	});
	// Current details come from the worker (a query), a moment after the page.
	const details = pane('Current Details');
	await check(`${gateID}: the current details show the table`, async () => {
		await details.locator('table').waitFor();
		return `"${short(oneLine(await details.locator('body').innerText()))}"`;
	});
	for (const [wave, region] of gateRows) {
		await check(`${gateID}: the details table has the row | ${wave} | ${region} |, in view`, async () => {
			const row = details.locator('tr')
				.filter({ has: details.getByRole('cell', { name: wave, exact: true }) })
				.filter({ has: details.getByRole('cell', { name: region, exact: true }) })
				.first();
			await row.waitFor();
			// In view: the row lies inside the pane's iframe as drawn, not
			// below its bottom edge (cut off).
			const frame = page.locator(`xpath=//h3[normalize-space()="Current Details"]/ancestor::div[.//iframe][1]//iframe`).first();
			const [fb, rb] = [await frame.boundingBox(), await row.boundingBox()];
			if (!fb || !rb) throw new Error('the row or the pane has no box on the page');
			if (rb.y + rb.height > fb.y + fb.height + 1) {
				throw new Error(`the row is cut off: its bottom is at ${Math.round(rb.y + rb.height - fb.y)}px of a pane the UI made ${Math.round(fb.height)}px high (the UI sizes the pane a little short of its content: a table that ends the details loses its last row)`);
			}
			return `"${oneLine(await row.innerText())}"`;
		});
	}
	await check(`${gateID}: the gate's timer summary in Events with Metadata`, async () => {
		const t = page.getByText(timerRe).first();
		await t.waitFor();
	});
	await screenshot(page, 'gate-user-metadata');

	// 3. The workflow list, filtered to the three releases.
	const ids = [gateID, rolledBackID, succeededID];
	const query = `WorkflowId IN (${ids.map((id) => `"${id}"`).join(', ')})`;
	await page.goto(`${base}/namespaces/${encodeURIComponent(namespace)}/workflows?query=${encodeURIComponent(query)}`);
	const statusOf = async (id) => {
		const row = page.getByRole('row').filter({ has: page.getByRole('link', { name: id, exact: true }) }).first();
		await row.waitFor();
		const cells = (await row.getByRole('cell').allInnerTexts()).map(oneLine);
		const known = ['Running', 'Completed', 'Failed', 'Canceled', 'Terminated', 'Timed Out', 'TimedOut', 'Continued as New', 'ContinuedAsNew'];
		return cells.find((c) => known.includes(c)) || `(no status among ${JSON.stringify(cells)})`;
	};
	const wantStatus = async (id, what, want) =>
		check(`the workflow list shows ${what} ${id} as ${want}`, async () => {
			let got = '';
			for (let i = 0; i < 10; i++) {
				got = await statusOf(id);
				if (got === want) return;
				await page.waitForTimeout(500);
			}
			throw new Error(`it shows "${got}"${want === 'Failed' ? ', so nobody scanning the list can tell that it did not ship' : ''}`);
		});
	await wantStatus(rolledBackID, 'the rolled-back (not shipped) release', 'Failed');
	await wantStatus(succeededID, 'the succeeded release', 'Completed');
	await wantStatus(gateID, 'the release at the gate', 'Running');
	await screenshot(page, 'workflow-list');
} catch (e) {
	fail(`unexpected: ${e.stack || e}`);
	await screenshot(page, 'unexpected');
} finally {
	await context.close();
	rmSync(profile, { recursive: true, force: true });
}

if (failures.length > 0) {
	console.log(`\n${failures.length} check(s) failed:`);
	for (const f of failures) console.log(`  - ${f}`);
	process.exit(1);
}
console.log('\nall checks passed');
