// e2e.mjs — drives the dashboard of a running `pixmill serve` in headless
// Chromium (Debian's /usr/bin/chromium through playwright-core). run.sh
// starts the server and sets:
//   BASE_URL  http://127.0.0.1:PORT
//   CATALOG   a CSV catalog (id,title,image) of ITEMS local photos
//   ITEMS     how many rows it has
//   QUERY     a word of one title, for the text search
//   OUTDIR    where the screenshots go
// and, for the checks under authentication (skipped when unset):
//   AUTH_BASE_URL  a second server whose config has an API key
//   API_KEY        that key
//   UPLOAD         an image file to upload to it
// and, for the catalog views (skipped when unset):
//   CAT_BASE_URL   a server whose store holds a folder run through the
//                  catalog pipeline with a vision model
//   CAT_IMAGES     how many distinct images the folder has
//   CAT_TEXT_FILE  the file name of its one image with text, and
//   CAT_TEXT_WORD  a word of that text
//   CAT_COPY       a byte copy of opencv_fruits.jpg
//   CAT_ORIGINAL, CAT_MIRROR  a photo and its mirrored copy
// Prints one line per check and "dashboard e2e: N passed, M failed";
// exits 1 when any check failed.
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import path from 'node:path';

const BASE = process.env.BASE_URL || 'http://127.0.0.1:8080';
const CATALOG = process.env.CATALOG;
const ITEMS = Number(process.env.ITEMS || 3);
const QUERY = process.env.QUERY || '';
const OUTDIR = process.env.OUTDIR || '.';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const JOB_TIMEOUT = Number(process.env.JOB_TIMEOUT_MS || 180000);
const AUTH_BASE = process.env.AUTH_BASE_URL || '';
const API_KEY = process.env.API_KEY || '';
const UPLOAD = process.env.UPLOAD || '';
const CAT_BASE = process.env.CAT_BASE_URL || '';
const CAT_IMAGES = Number(process.env.CAT_IMAGES || 0);
const CAT_TEXT_FILE = process.env.CAT_TEXT_FILE || '';
const CAT_TEXT_WORD = process.env.CAT_TEXT_WORD || '';
const CAT_COPY = process.env.CAT_COPY || '';
const CAT_ORIGINAL = process.env.CAT_ORIGINAL || '';
const CAT_MIRROR = process.env.CAT_MIRROR || '';

let passed = 0;
let failed = 0;
function ok(name) {
  passed++;
  console.log('ok   ' + name);
}
function fail(name, why) {
  failed++;
  console.log('FAIL ' + name + ': ' + String(why && why.message ? why.message : why).split('\n')[0]);
}
// Runs one check; a failed check does not stop the others unless fatal.
async function check(name, fn, fatal) {
  try {
    await fn();
    ok(name);
    return true;
  } catch (e) {
    fail(name, e);
    if (fatal) throw new Error('stopped after: ' + name);
    return false;
  }
}
function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}

fs.mkdirSync(OUTDIR, { recursive: true });
if (!CATALOG || !fs.existsSync(CATALOG)) {
  fail('setup', 'CATALOG not set or missing');
  console.log(`dashboard e2e: ${passed} passed, ${failed} failed`);
  process.exit(1);
}

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  // --no-sandbox: CI runs as root. The rest keep Chromium from calling
  // out (this machine has no network but loopback).
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run'],
});
const consoleErrors = [];
let page;
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, colorScheme: 'light' });
  page = await context.newPage();
  page.on('console', (m) => {
    if (m.type() === 'error') consoleErrors.push(m.text() + (m.location().url ? ' @ ' + m.location().url : ''));
  });
  page.on('pageerror', (e) => consoleErrors.push('page error: ' + e.message));
  page.on('requestfailed', (r) => {
    // EventSource streams are closed by the page on purpose.
    if (!r.url().includes('/events')) consoleErrors.push('request failed: ' + r.url() + ' ' + (r.failure() || {}).errorText);
  });

  await check('page loads with its assets', async () => {
    const res = await page.goto(BASE + '/', { waitUntil: 'load' });
    assert(res && res.status() === 200, 'GET / answered ' + (res && res.status()));
    assert((res.headers()['content-type'] || '').startsWith('text/html'), 'content-type ' + res.headers()['content-type']);
    assert((await page.title()) === 'pixmill', 'title is ' + (await page.title()));
    await page.waitForFunction(() => typeof window.uPlot === 'function', null, { timeout: 5000 });
    await page.locator('#chart-items canvas').first().waitFor({ timeout: 5000 });
  }, true);

  await check('static assets have a strong ETag and answer 304', async () => {
    for (const p of ['/', '/app.js', '/style.css', '/vendor/uPlot.iife.min.js', '/vendor/uPlot.min.css']) {
      const r = await fetch(BASE + p);
      const etag = r.headers.get('etag');
      assert(r.status === 200, p + ': HTTP ' + r.status);
      assert(etag && /^"[^"]+"$/.test(etag), p + ': ETag ' + etag);
      const r2 = await fetch(BASE + p, { headers: { 'If-None-Match': etag } });
      assert(r2.status === 304, p + ': If-None-Match gave ' + r2.status);
    }
    const lic = await fetch(BASE + '/licenses.txt');
    const text = await lic.text();
    assert(lic.status === 200 && /uplot/i.test(text) && /MIT/.test(text), '/licenses.txt lacks the uPlot licence');
  });

  let jobId = null;
  await check('submit a catalog through the form', async () => {
    await page.setInputFiles('#catalog-file', CATALOG);
    await page.fill('#job-name', 'e2e catalog');
    await page.selectOption('#pipeline', 'thumbnails');
    await page.fill('#sizes', '128,256');
    await page.click('#submit-btn');
    const status = page.locator('#submit-status');
    await page.waitForFunction(() => {
      const s = document.getElementById('submit-status');
      return s.dataset.jobId || s.classList.contains('error');
    }, null, { timeout: 15000 });
    jobId = await status.getAttribute('data-job-id');
    assert(jobId, 'no job id: ' + (await status.textContent()));
    await page.locator(`[data-testid="job-${jobId}"]`).waitFor({ timeout: 5000 });
  }, true);

  const job = page.locator(`[data-testid="job-${jobId}"]`);
  await check(`job ${jobId} progress reaches 100% (done ${ITEMS})`, async () => {
    await page.waitForFunction(({ id, n }) => {
      const li = document.querySelector(`[data-testid="job-${id}"]`);
      if (!li) return false;
      const t = (k) => (li.querySelector(`[data-testid="job-${k}"]`) || {}).textContent;
      return t('percent') === '100%' && t('done') === String(n) && li.dataset.state === 'done';
    }, { id: jobId, n: ITEMS }, { timeout: JOB_TIMEOUT, polling: 250 });
    const failedN = await job.locator('[data-testid="job-failed"]').textContent();
    assert(failedN === '0', 'failed ' + failedN);
    const bar = await job.locator('progress').evaluate((p) => p.value);
    assert(bar === 1, 'progress bar value ' + bar);
  });

  await check('gallery shows an output that loaded', async () => {
    await page.locator('[data-testid="gallery"] img').first().waitFor({ state: 'attached', timeout: 30000 });
    await page.locator('#gallery').scrollIntoViewIfNeeded();
    await page.waitForFunction(() => [...document.querySelectorAll('[data-testid="gallery"] img')]
      .some((i) => i.complete && i.naturalWidth > 0), null, { timeout: 15000 });
    const src = await page.locator('[data-testid="gallery"] img').first().getAttribute('src');
    assert(src && src.startsWith('/api/assets/'), 'img src ' + src);
  });

  await check('titles are shown as text, not markup', async () => {
    // One title of run.sh's catalog carries HTML: it must appear verbatim.
    const html = await page.locator('#gallery').evaluate((g) => ({
      text: g.textContent, injected: g.querySelectorAll('figcaption b, figcaption script').length,
    }));
    assert(html.injected === 0, 'markup from a title became elements');
    assert(html.text.includes('<b>'), 'the title with markup is not shown verbatim');
  });

  await check(`text search for "${QUERY}" finds it`, async () => {
    await page.fill('#search-q', QUERY);
    await page.click('[data-testid="search-text-btn"]');
    const res = page.locator('[data-testid="search-result"]');
    await res.first().waitFor({ timeout: 10000 });
    const texts = await res.allTextContents();
    assert(texts.some((t) => t.toLowerCase().includes(QUERY.toLowerCase())), 'results: ' + texts.join(' | '));
  });

  await check('charts show throughput and latency', async () => {
    await page.waitForFunction(() => document.getElementById('chart-lat-now').textContent.includes('p95'),
      null, { timeout: 10000 });
    const n = await page.locator('.uplot').count();
    assert(n === 2, n + ' charts');
  });

  await check('failed-items section is empty for a clean job', async () => {
    const rows = await page.locator('[data-testid="failed-item"]').count();
    assert(rows === 0, rows + ' failed items listed');
    assert(await page.locator('#failed-empty').isVisible(), '"No failed items" not shown');
  });

  await check('screenshot saved', async () => {
    // Let lazy thumbnails (gallery, search results) finish first.
    await page.evaluate(() => window.scrollTo(0, document.body.scrollHeight));
    await page.waitForFunction(() => [...document.images].every((i) => i.complete), null, { timeout: 10000 })
      .catch(() => {});
    await page.evaluate(() => window.scrollTo(0, 0));
    const file = path.join(OUTDIR, 'dashboard.png');
    await page.screenshot({ path: file, fullPage: true });
    assert(fs.statSync(file).size > 10000, 'tiny screenshot');
    await page.emulateMedia({ colorScheme: 'dark' });
    await page.waitForTimeout(300);
    await page.screenshot({ path: path.join(OUTDIR, 'dashboard-dark.png'), fullPage: true });
  });

  await check('no console errors on the page', async () => {
    assert(consoleErrors.length === 0, consoleErrors.length + ': ' + consoleErrors.join(' || '));
  });

  if (AUTH_BASE && API_KEY && UPLOAD) {
    // Under an API key: an <img src> cannot send it, so the page must fetch
    // each image with the key and show it from a blob: URL.
    let assetUrl = '';
    await check('auth: an upload with the key; its asset is 401 without the key', async () => {
      const res = await fetch(AUTH_BASE + '/api/images?sizes=200&title=' + encodeURIComponent('Keyed upload'), {
        method: 'POST', body: fs.readFileSync(UPLOAD),
        headers: { 'Content-Type': 'application/octet-stream', Authorization: 'Bearer ' + API_KEY },
      });
      assert(res.status === 200, 'upload answered ' + res.status);
      assetUrl = (await res.json()).outputs[0].url;
      const plain = await fetch(AUTH_BASE + assetUrl);
      assert(plain.status === 401, 'the asset without a key answered ' + plain.status);
    }, true);
    const ctx2 = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page2 = await ctx2.newPage();
    await check('auth: the page asks for a key', async () => {
      const res = await page2.goto(AUTH_BASE + '/', { waitUntil: 'load' });
      assert(res && res.status() === 200, 'GET / answered ' + (res && res.status()));
      await page2.locator('#auth').waitFor({ state: 'visible', timeout: 10000 });
    });
    await check('auth: with the key, the gallery shows the output from a blob: URL', async () => {
      await page2.fill('#api-key', API_KEY);
      await page2.locator('#auth-form button[type="submit"], #auth-form input[type="submit"]').first().click();
      await page2.locator('#auth').waitFor({ state: 'hidden', timeout: 10000 });
      await page2.waitForFunction(() => [...document.querySelectorAll('[data-testid="gallery"] img')]
        .some((i) => i.complete && i.naturalWidth > 0 && i.src.startsWith('blob:')), null, { timeout: 30000 });
      const tile = page2.locator('[data-testid="gallery-item"]').first();
      const text = await tile.textContent();
      assert(text.includes('Keyed upload'), 'tile text: ' + text);
      const href = await tile.locator('a').getAttribute('href');
      assert(href && href.startsWith('blob:'), 'the tile links to ' + href + ', which would be a 401');
    });
    await page2.screenshot({ path: path.join(OUTDIR, 'dashboard-auth.png'), fullPage: true }).catch(() => {});
    await ctx2.close();
  }
  if (CAT_BASE) {
    // The catalog views, on a server whose store holds a folder catalogued
    // with the catalog pipeline (run.sh): a text image, a byte copy, a
    // mirrored copy, captions and tags from the vision stand-in.
    const ctx3 = await browser.newContext({ viewport: { width: 1280, height: 900 }, colorScheme: 'light' });
    const page3 = await ctx3.newPage();
    const errors3 = [];
    page3.on('console', (m) => { if (m.type() === 'error') errors3.push(m.text()); });
    page3.on('pageerror', (e) => errors3.push('page error: ' + e.message));
    const tiles = page3.locator('[data-testid="catalog-item"]');
    const names = () => page3.locator('[data-testid="catalog-item"] .name').allTextContents();
    // Waits until the gallery shows exactly n tiles (the filters apply
    // asynchronously) and returns their names.
    const settle = async (n) => {
      await page3.waitForFunction((k) => document.querySelectorAll('[data-testid="catalog-item"]').length === k &&
        !document.getElementById('catalog-status').textContent.startsWith('Catalog:'), n, { timeout: 10000 });
      return names();
    };
    const api3 = async (p) => {
      const r = await fetch(CAT_BASE + p);
      assert(r.status === 200, p + ' answered ' + r.status);
      return r.json();
    };

    await check(`catalog: the gallery shows the ${CAT_IMAGES} distinct images of the folder`, async () => {
      const res = await page3.goto(CAT_BASE + '/', { waitUntil: 'load' });
      assert(res && res.status() === 200, 'GET / answered ' + (res && res.status()));
      const got = await settle(CAT_IMAGES);
      assert(got.includes(CAT_TEXT_FILE), 'no ' + CAT_TEXT_FILE + ' in ' + got.join(', '));
      await page3.waitForFunction(() => [...document.querySelectorAll('[data-testid="catalog-item"] img')]
        .every((i) => i.complete && i.naturalWidth > 0), null, { timeout: 15000 });
    }, true);

    await check('catalog: captions from the vision model show on the tiles', async () => {
      const caps = await page3.locator('[data-testid="catalog-item"] .caption').allTextContents();
      assert(caps.length === CAT_IMAGES, caps.length + ' captions for ' + CAT_IMAGES + ' images');
      assert(caps.every((c) => /^a mostly \w+ image/.test(c)), 'captions: ' + caps.join(' | '));
    });

    await check('catalog: "has text" narrows the gallery to the text image', async () => {
      await page3.check('#cat-text');
      const got = await settle(1);
      assert(got[0] === CAT_TEXT_FILE, 'shown: ' + got.join(', '));
      await page3.uncheck('#cat-text');
      await settle(CAT_IMAGES);
    });

    await check(`catalog: search for "${CAT_TEXT_WORD}" (a word in the image) finds the text image`, async () => {
      await page3.fill('#cat-q', CAT_TEXT_WORD);
      const got = await settle(1);
      assert(got[0] === CAT_TEXT_FILE, 'shown: ' + got.join(', '));
      await page3.fill('#cat-q', 'nosuchwordanywhere');
      await settle(0);
      const st = await page3.locator('#catalog-status').textContent();
      assert(/No image matches/.test(st), 'status: ' + st);
      await page3.fill('#cat-q', '');
      await settle(CAT_IMAGES);
    });

    await check('catalog: format PNG shows only the PNG', async () => {
      await page3.selectOption('#cat-format', 'png');
      const got = await settle(1);
      assert(got[0] === CAT_TEXT_FILE, 'shown: ' + got.join(', '));
      await page3.selectOption('#cat-format', '');
      await settle(CAT_IMAGES);
    });

    await check('catalog: "duplicates only" shows the copied image, marked with its copies', async () => {
      await page3.check('#cat-dupes');
      const got = await settle(1);
      assert([CAT_COPY, 'opencv_fruits.jpg'].includes(got[0]), 'shown: ' + got.join(', '));
      const chip = await tiles.first().locator('.chip.dup').textContent();
      assert(chip === '2 copies', 'chip: ' + chip);
      await page3.uncheck('#cat-dupes');
      await settle(CAT_IMAGES);
    });

    let tag = '';
    await check('catalog: the text image\'s page shows its OCR text, caption, tags and outputs', async () => {
      await tiles.filter({ hasText: CAT_TEXT_FILE }).locator('a').click();
      await page3.locator('[data-testid="image-page"]').waitFor({ state: 'visible', timeout: 5000 });
      assert(await page3.locator('#main').isHidden(), 'the dashboard is still shown');
      await page3.waitForFunction(() => document.getElementById('img-items').children.length > 0, null, { timeout: 10000 });
      assert(/^#image\/[0-9a-f]{64}$/.test(new URL(page3.url()).hash), 'URL ' + page3.url());
      const ocr = await page3.locator('[data-testid="img-ocr"]').textContent();
      assert(ocr.toLowerCase().includes(CAT_TEXT_WORD), 'OCR text: ' + ocr);
      const cap = await page3.locator('[data-testid="img-caption"]').textContent();
      assert(/^a mostly \w+ image/.test(cap), 'caption: ' + cap);
      const tags = await page3.locator('[data-testid="img-tags"] button').allTextContents();
      assert(tags.includes('test'), 'tags: ' + tags.join(', '));
      tag = tags[0];
      const title = await page3.locator('[data-testid="img-title"]').textContent();
      assert(title === CAT_TEXT_FILE, 'title ' + title);
      await page3.waitForFunction(() => {
        const imgs = [...document.querySelectorAll('[data-testid="img-outputs"] img')];
        return imgs.length >= 2 && imgs.every((i) => i.complete && i.naturalWidth > 0);
      }, null, { timeout: 10000 });
      const meta = await page3.locator('[data-testid="img-meta"]').textContent();
      assert(meta.includes('png') && meta.includes('1000 × 200'), 'metadata: ' + meta);
      await page3.screenshot({ path: path.join(OUTDIR, 'catalog-image.png'), fullPage: true });
    });

    await check('catalog: a tag on the page filters the gallery by it', async () => {
      await page3.locator('[data-testid="img-tags"] button', { hasText: tag }).first().click();
      await page3.locator('#main').waitFor({ state: 'visible', timeout: 5000 });
      const want = (await api3('/api/images?limit=200&tag=' + encodeURIComponent(tag))).images.length;
      assert(want >= 1, 'the API has no image tagged ' + tag);
      const got = await settle(want);
      assert(got.includes(CAT_TEXT_FILE), 'shown: ' + got.join(', '));
      await page3.fill('#cat-tag', '');
      await settle(CAT_IMAGES);
    });

    await check('catalog: the copied image\'s page lists both files as exact duplicates', async () => {
      await page3.check('#cat-dupes');
      await settle(1);
      await tiles.first().locator('a').click();
      await page3.waitForFunction(() => document.getElementById('img-items').children.length > 0, null, { timeout: 10000 });
      const rows = await page3.locator('[data-testid="img-items"] tr').allTextContents();
      assert(rows.length === 2 && rows.some((r) => r.includes(CAT_COPY)) && rows.some((r) => r.includes('opencv_fruits.jpg')),
        'rows: ' + rows.join(' | '));
      const note = await page3.locator('[data-testid="img-dup-note"]').textContent();
      assert(/Exact duplicates: 2 files/.test(note), 'note: ' + note);
      await page3.locator('[data-testid="img-back"]').click();
      await page3.locator('#main').waitFor({ state: 'visible', timeout: 5000 });
      await page3.uncheck('#cat-dupes');
      await settle(CAT_IMAGES);
    });

    await check('catalog: "similar images" on a photo\'s page finds its mirrored copy', async () => {
      await tiles.filter({ hasText: CAT_ORIGINAL }).locator('a').click();
      await page3.waitForFunction(() => document.getElementById('img-items').children.length > 0, null, { timeout: 10000 });
      const sim = page3.locator('[data-testid="img-similar"] [data-testid="img-neighbour"]');
      await sim.first().waitFor({ timeout: 10000 });
      const first = await sim.first().getAttribute('data-sha256');
      const mirror = (await api3('/api/images?limit=200')).images.find((x) => (x.image || '').endsWith('/' + CAT_MIRROR));
      assert(mirror, 'the API does not list ' + CAT_MIRROR);
      assert(first === mirror.sha256, 'the most similar is ' + first + ', not the mirror ' + mirror.sha256);
      // Following it opens the mirror's page.
      await sim.first().locator('a').click();
      await page3.waitForFunction((m) => location.hash === '#image/' + m &&
        document.getElementById('img-h').textContent === 'castle-mirror.jpg', mirror.sha256, { timeout: 10000 });
    });

    await check('catalog: the API refuses bad image ids (400) and unknown ones (404)', async () => {
      const bad = await fetch(CAT_BASE + '/api/images/not-a-hash');
      assert(bad.status === 400, 'bad id answered ' + bad.status);
      const none = await fetch(CAT_BASE + '/api/images/' + '0'.repeat(64));
      assert(none.status === 404, 'unknown id answered ' + none.status);
      await page3.goto(CAT_BASE + '/#image/' + '0'.repeat(64), { waitUntil: 'load' });
      await page3.waitForFunction(() => /Cannot show this image/.test(document.getElementById('img-status').textContent),
        null, { timeout: 10000 });
      errors3.splice(0); // the page's 404 is logged by the browser: expected
    });

    await check('catalog: Escape leaves an image page; gallery screenshot; no console errors', async () => {
      await page3.keyboard.press('Escape');
      await page3.locator('#main').waitFor({ state: 'visible', timeout: 5000 });
      await settle(CAT_IMAGES);
      await page3.locator('#catalog-sec').screenshot({ path: path.join(OUTDIR, 'catalog.png') });
      assert(errors3.length === 0, errors3.join(' || '));
    });
    await ctx3.close();
  }
} catch (e) {
  if (!String(e.message).startsWith('stopped after')) fail('e2e', e);
  if (page) await page.screenshot({ path: path.join(OUTDIR, 'dashboard-failure.png'), fullPage: true }).catch(() => {});
  if (consoleErrors.length) console.log('console errors: ' + consoleErrors.join(' || '));
} finally {
  await browser.close();
}
console.log(`dashboard e2e: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
