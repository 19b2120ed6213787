/* pixmill dashboard: plain JavaScript, no framework, no build step.
 *
 * Talks to the API of docs/API.md on the same origin: the job list comes
 * from GET /api/jobs and then one EventSource per active job (at most
 * MAX_STREAMS at once: a browser keeps only six HTTP/1.1 connections per
 * host, and the others would starve); charts poll GET /api/stats; the
 * gallery GET /api/outputs; the catalog and an image's page GET
 * /api/images and /api/images/SHA256; failed items GET /api/failed.
 *
 * Data from the server (titles, keys, error messages come from users'
 * catalogs) only ever reaches the page through textContent and attribute
 * setters, never innerHTML.
 *
 * API keys: when any request answers 401 the key form appears; the key is
 * kept in localStorage and sent as "Authorization: Bearer KEY" (and as
 * ?api_key= to EventSource, which cannot set headers). Images are then
 * fetched with the header too and shown from blob: URLs.
 */
'use strict';

(function () {
  const KEY_STORE = 'pixmill.apiKey';
  const MAX_STREAMS = 3;
  const ACTIVE = new Set(['queued', 'running', 'cancelling']);
  const CANCELLABLE = new Set(['queued', 'running']);

  const $ = (id) => document.getElementById(id);

  /* ---- small helpers ---- */

  // el('li', {class: 'x', dataset: {testid: 'y'}}, child, 'text', ...)
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    if (attrs) {
      for (const [k, v] of Object.entries(attrs)) {
        if (v === undefined || v === null || v === false) continue;
        if (k === 'dataset') Object.assign(e.dataset, v);
        else if (k === 'text') e.textContent = String(v);
        else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
        else if (k in e && typeof v !== 'string') e[k] = v;
        else e.setAttribute(k, v === true ? '' : String(v));
      }
    }
    for (const c of children) {
      if (c === undefined || c === null || c === false) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  function setStatus(node, text, kind) {
    node.textContent = text || '';
    node.classList.toggle('error', kind === 'error');
    node.classList.toggle('ok', kind === 'ok');
  }

  function fmtNum(x, digits) {
    if (typeof x !== 'number' || !isFinite(x)) return '—';
    return x.toFixed(digits);
  }

  function fmtDuration(s) {
    if (typeof s !== 'number' || !isFinite(s) || s < 0) return '—';
    s = Math.round(s);
    if (s < 60) return s + ' s';
    const m = Math.floor(s / 60);
    if (m < 60) return m + ' min ' + (s % 60) + ' s';
    const h = Math.floor(m / 60);
    return h + ' h ' + (m % 60) + ' min';
  }

  function fmtTime(t) {
    if (typeof t !== 'number' || !isFinite(t)) return '—';
    const d = new Date(t * 1000);
    const today = new Date();
    return d.toDateString() === today.toDateString()
      ? d.toLocaleTimeString() : d.toLocaleString();
  }

  function fmtBytes(n) {
    if (typeof n !== 'number' || !isFinite(n)) return '';
    if (n < 1024) return n + ' B';
    if (n < 1048576) return (n / 1024).toFixed(1) + ' KiB';
    return (n / 1048576).toFixed(1) + ' MiB';
  }

  function hexToRgba(hex, a) {
    const m = /^#?([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(hex.trim());
    if (!m) return hex;
    return 'rgba(' + parseInt(m[1], 16) + ',' + parseInt(m[2], 16) + ',' +
      parseInt(m[3], 16) + ',' + a + ')';
  }

  /* ---- API access ---- */

  let apiKey = '';
  try { apiKey = localStorage.getItem(KEY_STORE) || ''; } catch (e) { /* storage off */ }

  class ApiError extends Error {
    constructor(status, code, message, retryAfter) {
      super(message);
      this.status = status;
      this.code = code;
      this.retryAfter = retryAfter;
    }
  }

  function authHeaders(h) {
    if (apiKey) h.set('Authorization', 'Bearer ' + apiKey);
    return h;
  }

  async function api(path, opts) {
    opts = opts || {};
    const usedKey = apiKey;
    const headers = authHeaders(new Headers(opts.headers || {}));
    if (!headers.has('Accept')) headers.set('Accept', 'application/json');
    let res;
    try {
      res = await fetch(path, {
        method: opts.method || 'GET', headers, body: opts.body, cache: 'no-store',
      });
    } catch (e) {
      setConn('bad', 'server unreachable');
      throw new ApiError(0, 'network', 'cannot reach the server');
    }
    // An answer to a request sent before the key changed says nothing.
    if (res.status === 401 && usedKey === apiKey) needKey(Boolean(usedKey));
    if (!res.ok) {
      let code = 'http_' + res.status;
      let msg = res.statusText || ('HTTP ' + res.status);
      try {
        const j = await res.json();
        if (j && j.error) {
          code = j.error.code || code;
          msg = j.error.message || msg;
        }
      } catch (e) { /* not JSON */ }
      const ra = parseInt(res.headers.get('Retry-After') || '', 10);
      throw new ApiError(res.status, code, msg, isFinite(ra) ? ra : undefined);
    }
    if (res.status === 204) return null;
    const ct = res.headers.get('Content-Type') || '';
    return ct.includes('json') ? res.json() : res.text();
  }

  function errText(e) {
    if (!(e instanceof ApiError)) return String(e && e.message || e);
    let t = e.message;
    if (e.code && e.status) t += ' (' + e.code + ', HTTP ' + e.status + ')';
    if (e.retryAfter !== undefined) t += '; try again in ' + e.retryAfter + ' s';
    return t;
  }

  /* ---- connection state and API key ---- */

  const connEl = $('conn');
  function setConn(kind, text) {
    connEl.textContent = text;
    connEl.classList.toggle('ok', kind === 'ok');
    connEl.classList.toggle('bad', kind === 'bad');
  }

  let keyAsked = false;
  function needKey(refused) {
    const box = $('auth');
    const wasHidden = box.hidden;
    box.hidden = false;
    const p = box.querySelector('p');
    p.textContent = apiKey && refused
      ? 'The server refused the saved API key. Enter another one.'
      : 'The server asked for an API key. It is kept in this browser only (local storage).';
    if (wasHidden && !keyAsked) {
      keyAsked = true;
      $('api-key').focus();
    }
  }

  function setKey(k) {
    apiKey = k;
    try {
      if (k) localStorage.setItem(KEY_STORE, k);
      else localStorage.removeItem(KEY_STORE);
    } catch (e) { /* storage off */ }
    keyAsked = false;
    // Streams carry the key in their URL: reopen them.
    for (const id of [...streams.keys()]) closeStream(id);
    galleryKey = '';
    catKey = '';
    refreshAll();
  }

  $('auth-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const k = $('api-key').value.trim();
    if (!k) return;
    $('api-key').value = '';
    $('auth').hidden = true;
    setKey(k);
  });
  $('auth-forget').addEventListener('click', () => {
    $('api-key').value = '';
    setKey('');
  });

  /* Images: plain <img src> unless a key is in use, then fetched with the
   * header and shown from a blob: URL (revoked when the view changes): an
   * <img> cannot send a key. A link around the image (the gallery's) then
   * opens the blob too, since following the asset URL would be a 401. With
   * public_assets in the server's config the plain URL would do, but the
   * page cannot know, and the fetch works either way. */
  function setImg(img, url, blobs) {
    if (!apiKey) {
      img.src = url;
      return;
    }
    fetch(url, { headers: authHeaders(new Headers()) })
      .then((r) => (r.ok ? r.blob() : Promise.reject(new Error('HTTP ' + r.status))))
      .then((b) => {
        const u = URL.createObjectURL(b);
        blobs.push(u);
        img.src = u;
        // Only a link to the image itself (not one to an image's page).
        const a = img.closest('a');
        if (a && a.getAttribute('href') === url) a.href = u;
      })
      .catch(() => img.dispatchEvent(new Event('error')));
  }

  function revoke(blobs) {
    for (const u of blobs.splice(0)) URL.revokeObjectURL(u);
  }

  function pickOutput(outputs, want) {
    // The smallest output at least `want` px wide, else the largest: the
    // one nearest `want` that the browser does not have to enlarge.
    const list = (outputs || []).filter((o) => o && o.url);
    if (!list.length) return null;
    list.sort((a, b) => (a.width || 0) - (b.width || 0));
    return list.find((o) => (o.width || 0) >= want) || list[list.length - 1];
  }

  function thumb(out, alt, blobs) {
    if (!out) return el('div', { class: 'noimg', text: 'no image' });
    const img = el('img', {
      alt: alt || out.name || 'output', loading: 'lazy', decoding: 'async',
      width: out.width || undefined, height: out.height || undefined,
    });
    img.addEventListener('error', () => {
      img.replaceWith(el('div', { class: 'noimg', text: 'not available' }));
    }, { once: true });
    setImg(img, out.url, blobs);
    return img;
  }

  /* ---- jobs ---- */

  const jobs = new Map(); // id -> {job, li, refs}
  const streams = new Map(); // id -> EventSource
  const jobsList = $('jobs-list');

  function jobRow(id) {
    const refs = {};
    const stat = (label, key) => {
      refs[key] = el('dd', { dataset: { testid: 'job-' + key } });
      return el('div', null, el('dt', { text: label }), refs[key]);
    };
    refs.title = el('span', { class: 'job-title', dataset: { testid: 'job-title' } });
    refs.state = el('span', { class: 'badge', dataset: { testid: 'job-state' } });
    refs.cancel = el('button', {
      type: 'button', class: 'danger small', text: 'Cancel',
      'aria-label': 'Cancel job ' + id, dataset: { testid: 'job-cancel' },
      onclick: () => cancelJob(id),
    });
    refs.bar = el('progress', { max: '1', 'aria-label': 'Job ' + id + ' progress', dataset: { testid: 'job-progress' } });
    refs.pct = el('span', { class: 'pct', dataset: { testid: 'job-percent' } });
    refs.error = el('p', { class: 'job-error', hidden: true, dataset: { testid: 'job-error' } });
    const li = el('li', { class: 'job', dataset: { jobId: String(id), testid: 'job-' + id } },
      el('div', { class: 'job-head' },
        refs.title, refs.state,
        el('div', { class: 'job-actions' }, refs.cancel)),
      el('div', { class: 'bar' }, refs.bar, refs.pct),
      el('dl', { class: 'job-stats' },
        stat('items', 'items'), stat('done', 'done'), stat('failed', 'failed'),
        stat('duplicates', 'duplicates'), stat('rate', 'rate'), stat('ETA', 'eta'),
        stat('pipeline', 'pipeline'), stat('updated', 'updated')),
      refs.error);
    return { li, refs };
  }

  function upsertJob(j) {
    if (!j || typeof j.id !== 'number') return;
    let rec = jobs.get(j.id);
    if (!rec) {
      rec = jobRow(j.id);
      jobs.set(j.id, rec);
      // newest (highest id) first
      let before = null;
      for (const li of jobsList.children) {
        if (Number(li.dataset.jobId) < j.id) { before = li; break; }
      }
      jobsList.insertBefore(rec.li, before);
      $('jobs-empty').hidden = true;
    }
    const prev = rec.job || {};
    // A late poll answer must not undo a newer event.
    if (prev.updated && j.updated && j.updated < prev.updated) return;
    rec.job = Object.assign({}, prev, j);
    renderJob(rec);
  }

  function renderJob(rec) {
    const j = rec.job;
    const r = rec.refs;
    const state = j.state || 'unknown';
    rec.li.dataset.state = state;
    r.title.textContent = '#' + j.id + (j.name ? ' ' + j.name : '');
    r.state.textContent = state;
    r.state.className = 'badge ' + state;
    r.cancel.hidden = !CANCELLABLE.has(state);
    let p = typeof j.progress === 'number' && isFinite(j.progress)
      ? Math.min(1, Math.max(0, j.progress)) : null;
    if (p === null && j.total > 0) p = Math.min(1, ((j.done || 0) + (j.failed || 0)) / j.total);
    if (p === null) {
      r.bar.removeAttribute('value'); // indeterminate
      r.pct.textContent = '…';
    } else {
      r.bar.value = p;
      r.pct.textContent = Math.floor(p * 100 + 1e-9) + '%';
    }
    r.bar.setAttribute('aria-valuetext', r.pct.textContent);
    const seen = (j.done || 0) + (j.failed || 0);
    const total = typeof j.total === 'number' ? j.total : j.items;
    r.items.textContent = typeof total === 'number'
      ? seen + ' / ' + total + (j.total_known === false ? '+' : '') : String(seen);
    r.done.textContent = String(j.done || 0);
    r.failed.textContent = String(j.failed || 0);
    r.duplicates.textContent = String(j.duplicates || 0);
    const running = state === 'running';
    r.rate.textContent = running && typeof j.rate === 'number' ? fmtNum(j.rate, 1) + ' items/s' : '—';
    r.eta.textContent = running && typeof j.eta_s === 'number' ? fmtDuration(j.eta_s) : '—';
    r.pipeline.textContent = j.pipeline || '—';
    r.updated.textContent = fmtTime(j.updated || j.created);
    r.error.hidden = !j.error;
    r.error.textContent = j.error ? String(j.error) : '';
  }

  async function cancelJob(id) {
    const rec = jobs.get(id);
    if (rec) rec.refs.cancel.disabled = true;
    try {
      const j = await api('/api/jobs/' + id, { method: 'DELETE' });
      upsertJob(j);
    } catch (e) {
      if (rec) setStatus(rec.refs.error, 'cancel: ' + errText(e), 'error');
      if (rec) rec.refs.error.hidden = false;
    } finally {
      if (rec) rec.refs.cancel.disabled = false;
    }
    scheduleRefresh();
  }

  function openStreams() {
    // Running jobs first, then the oldest queued: they start next.
    const active = [...jobs.values()]
      .filter((r) => r.job && ACTIVE.has(r.job.state))
      .sort((a, b) => (a.job.state === 'running' ? 0 : 1) - (b.job.state === 'running' ? 0 : 1) ||
        a.job.id - b.job.id);
    for (const r of active) {
      if (streams.size >= MAX_STREAMS) break;
      openStream(r.job.id);
    }
    for (const id of [...streams.keys()]) {
      const r = jobs.get(id);
      if (!r || !ACTIVE.has(r.job.state)) closeStream(id);
    }
  }

  function openStream(id) {
    if (streams.has(id) || typeof EventSource === 'undefined') return;
    let url = '/api/jobs/' + id + '/events';
    if (apiKey) url += '?api_key=' + encodeURIComponent(apiKey);
    const es = new EventSource(url);
    streams.set(id, es);
    const onData = (ev) => {
      let j = null;
      try { j = JSON.parse(ev.data); } catch (e) { return; }
      if (j && typeof j.id !== 'number') j.id = id;
      upsertJob(j);
      return j;
    };
    es.addEventListener('progress', onData);
    es.addEventListener('end', (ev) => {
      onData(ev);
      closeStream(id);
      jobEnded();
    });
    es.addEventListener('error', () => {
      // CLOSED: the server refused the stream (401, 404...); CONNECTING:
      // the browser retries by itself. Either way the job poll catches up.
      if (es.readyState === EventSource.CLOSED) {
        closeStream(id);
        scheduleRefresh();
      }
    });
  }

  function closeStream(id) {
    const es = streams.get(id);
    if (es) es.close();
    streams.delete(id);
  }

  async function loadJobs() {
    const r = await api('/api/jobs?limit=30');
    const list = (r && r.jobs) || [];
    for (const j of list) upsertJob(j);
    const keep = new Set(list.map((j) => j.id));
    for (const [id, rec] of jobs) {
      if (!keep.has(id) && !streams.has(id) && list.length >= 30) {
        rec.li.remove();
        jobs.delete(id);
      }
    }
    $('jobs-empty').hidden = jobs.size > 0;
    syncJobOptions();
    openStreams();
    // A finished job the page had been following: refresh what it made.
    let ended = false;
    for (const j of list) {
      const was = lastStates.get(j.id);
      if (was && ACTIVE.has(was) && !ACTIVE.has(j.state)) ended = true;
      lastStates.set(j.id, j.state);
    }
    if (ended) jobEnded();
  }
  const lastStates = new Map();

  let endTimer = 0;
  function jobEnded() {
    clearTimeout(endTimer);
    endTimer = setTimeout(() => {
      quiet(loadGallery);
      reloadCatalog();
      quiet(loadFailed);
      quiet(loadJobs);
    }, 200);
  }

  let refreshTimer = 0;
  function scheduleRefresh() {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(() => quiet(loadJobs), 300);
  }

  $('jobs-refresh').addEventListener('click', () => quiet(loadJobs));

  /* ---- submit ---- */

  async function catalogType(file) {
    const chosen = $('catalog-format').value;
    if (chosen !== 'auto') return chosen;
    const name = (file.name || '').toLowerCase();
    if (name.endsWith('.csv') || file.type === 'text/csv') return 'text/csv';
    if (/\.(jsonl|ndjson|json)$/.test(name)) return 'application/x-ndjson';
    const head = (await file.slice(0, 256).text()).trimStart();
    return head.startsWith('{') ? 'application/x-ndjson' : 'text/csv';
  }

  $('submit-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const form = ev.currentTarget;
    const status = $('submit-status');
    if (!form.reportValidity()) return;
    const file = $('catalog-file').files[0];
    if (!file) {
      setStatus(status, 'Choose a catalog file first.', 'error');
      return;
    }
    const q = new URLSearchParams();
    q.set('pipeline', $('pipeline').value);
    const sizes = $('sizes').value.replace(/\s+/g, '');
    if (sizes) q.set('sizes', sizes);
    const formats = $('formats').value.replace(/\s+/g, '').toLowerCase();
    if (formats) q.set('formats', formats);
    if ($('quality').value) q.set('quality', $('quality').value);
    const name = $('job-name').value.trim();
    if (name) q.set('name', name);
    const btn = $('submit-btn');
    btn.disabled = true;
    setStatus(status, 'Uploading ' + file.name + ' (' + fmtBytes(file.size) + ')…');
    delete status.dataset.jobId;
    try {
      const ctype = await catalogType(file);
      const r = await api('/api/jobs?' + q.toString(), {
        method: 'POST', body: file, headers: { 'Content-Type': ctype },
      });
      status.dataset.jobId = String(r.id);
      setStatus(status, 'Submitted job #' + r.id + ' (' + (r.state || 'queued') + ').', 'ok');
      upsertJob({ id: r.id, state: r.state || 'queued', name: name || undefined, pipeline: q.get('pipeline'), progress: 0, done: 0, failed: 0 });
      lastStates.set(r.id, r.state || 'queued');
      openStreams();
      scheduleRefresh();
      form.reset();
    } catch (e) {
      setStatus(status, 'Not submitted: ' + errText(e), 'error');
    } finally {
      btn.disabled = false;
    }
  });

  /* ---- charts ---- */

  let charts = null; // {items, lat}
  let lastStats = null;

  function chartColors() {
    const cs = getComputedStyle(document.documentElement);
    const v = (n) => cs.getPropertyValue(n).trim();
    return { fg: v('--muted'), grid: v('--grid'), s1: v('--s1'), s2: v('--s2'), s3: v('--s3') };
  }

  function emptySeries(n) {
    const a = [[]];
    for (let i = 0; i < n; i++) a.push([]);
    return a;
  }

  function makeCharts() {
    if (charts) {
      charts.items.destroy();
      charts.lat.destroy();
      charts = null;
    }
    if (typeof window.uPlot !== 'function') {
      $('chart-items').textContent = 'Charts unavailable (uPlot did not load).';
      return;
    }
    const c = chartColors();
    const axis = () => ({
      stroke: c.fg, grid: { stroke: c.grid, width: 1 }, ticks: { stroke: c.grid, width: 1 },
    });
    const opts = (series, unit) => ({
      width: Math.max(200, $('chart-items').clientWidth || 400),
      height: 200,
      scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] } },
      series: [{}].concat(series),
      axes: [axis(), Object.assign(axis(), { size: 50, values: (u, ticks) => ticks.map((t) => t + unit) })],
      legend: { show: true },
      cursor: { points: { size: 6 } },
    });
    // A second without a sample (null: no request for the latency series)
    // is a gap in the line, not a fall to 0. A sample between two gaps has
    // no line to be part of: it is drawn as a dot.
    const lone = (u, sidx) => {
      const d = u.data[sidx] || [];
      const out = [];
      for (let i = 0; i < d.length; i++) {
        if (d[i] != null && d[i - 1] == null && d[i + 1] == null) out.push(i);
      }
      return out.length ? out : null;
    };
    const s = (label, color, fill) => ({
      label, stroke: color, width: 2, spanGaps: false,
      points: { show: false, size: 5, filter: lone },
      fill: fill ? hexToRgba(color, 0.15) : undefined,
      value: (u, v) => (v === null || v === undefined ? '—' : v.toFixed(1)),
    });
    const items = new window.uPlot(opts([s('items/s', c.s1, true)], ''),
      emptySeries(1), $('chart-items'));
    const lat = new window.uPlot(opts([s('p50 ms', c.s3, false), s('p95 ms', c.s2, false)], ''),
      emptySeries(2), $('chart-lat'));
    charts = { items, lat };
    if (lastStats) drawStats(lastStats);
  }

  function lastValue(a) {
    for (let i = (a || []).length - 1; i >= 0; i--) {
      if (typeof a[i] === 'number') return a[i];
    }
    return null;
  }

  function drawStats(st) {
    const t = Array.isArray(st.t) ? st.t : [];
    const col = (a) => t.map((_, i) => (Array.isArray(a) && typeof a[i] === 'number' ? a[i] : null));
    const items = col(st.items_per_s);
    const p50 = col(st.req_p50_ms);
    const p95 = col(st.req_p95_ms);
    if (charts) {
      charts.items.setData([t, items]);
      charts.lat.setData([t, p50, p95]);
    }
    const li = lastValue(items);
    $('chart-items-now').textContent = li === null ? '' : '— now ' + fmtNum(li, 1) + ' items/s';
    const l50 = lastValue(p50);
    const l95 = lastValue(p95);
    $('chart-lat-now').textContent = l50 === null && l95 === null ? ''
      : '— now p50 ' + fmtNum(l50, 1) + ' ms, p95 ' + fmtNum(l95, 1) + ' ms';
  }

  async function loadStats() {
    const st = await api('/api/stats');
    lastStats = st || {};
    drawStats(lastStats);
  }

  function resizeCharts() {
    if (!charts) return;
    for (const [id, u] of [['chart-items', charts.items], ['chart-lat', charts.lat]]) {
      const w = Math.max(200, $(id).clientWidth);
      if (Math.abs(w - u.width) > 2) u.setSize({ width: w, height: 200 });
    }
  }

  /* ---- gallery ---- */

  let galleryKey = '';
  const galleryBlobs = [];

  async function loadGallery() {
    const r = await api('/api/outputs?limit=24');
    const outs = (r && r.outputs) || [];
    // One tile per source image: its output nearest 256 px. An entry may
    // list all of its asset's outputs ("outputs"); else the entries of one
    // asset are its outputs.
    const bySha = new Map();
    for (const o of outs) {
      // The source image's hash: the {sha256} of /api/assets/{sha256}/NAME.
      const m = /\/api\/assets\/([^/]+)\//.exec(o.url || '');
      const k = (m && m[1]) || o.asset || o.sha256 || o.url;
      if (!bySha.has(k)) bySha.set(k, []);
      const all = Array.isArray(o.outputs) && o.outputs.length ? o.outputs : [o];
      for (const x of all) bySha.get(k).push(Object.assign({}, x, { title: o.title, sha256: o.sha256 }));
    }
    const tiles = [...bySha.values()].map((list) => pickOutput(list, 256)).filter(Boolean);
    const key = tiles.map((o) => o.url + '|' + (o.title || '')).join('\n');
    if (key === galleryKey) return;
    galleryKey = key;
    revoke(galleryBlobs);
    const ul = $('gallery');
    ul.replaceChildren(...tiles.map((o) => {
      const title = o.title || '(untitled)';
      return el('li', { dataset: { testid: 'gallery-item', sha256: o.sha256 || '' } },
        el('figure', null,
          el('a', { href: o.url, title: 'Open ' + (o.name || 'output') }, thumb(o, title, galleryBlobs)),
          el('figcaption', null, title,
            el('span', { class: 'meta', text: [o.name, o.width && o.height ? o.width + '×' + o.height : ''].filter(Boolean).join(' · ') }))));
    }));
    $('gallery-empty').hidden = tiles.length > 0;
  }

  $('gallery-refresh').addEventListener('click', () => { galleryKey = ''; quiet(loadGallery); });

  /* ---- catalog: the gallery with its filters, and one image's page ----
   * GET /api/images with the filters as query parameters; a tile links to
   * #image/SHA256, which shows the image's page (GET /api/images/SHA256)
   * in place of the dashboard; "#" (or Back) returns to it. */

  const catBlobs = [];
  let catCursor = null;
  let catSeq = 0; // answers of superseded queries are dropped
  let catKey = '';
  let catShown = 0;

  function baseName(p) {
    const s = String(p || '');
    const i = s.lastIndexOf('/');
    return i >= 0 ? s.slice(i + 1) : s;
  }

  function imageLabel(x) {
    return x.title || baseName(x.image) || String(x.sha256 || '').slice(0, 12) || '(untitled)';
  }

  function catalogQuery() {
    const q = new URLSearchParams();
    const text = $('cat-q').value.trim();
    const tag = $('cat-tag').value.trim();
    if (text) q.set('q', text);
    if ($('cat-job').value) q.set('job', $('cat-job').value);
    if ($('cat-format').value) q.set('format', $('cat-format').value);
    if (tag) q.set('tag', tag);
    if ($('cat-text').checked) q.set('has_text', 'true');
    if ($('cat-caption').checked) q.set('has_caption', 'true');
    if ($('cat-dupes').checked) q.set('duplicates', 'true');
    q.set('limit', '48');
    return q;
  }

  function catalogTile(x) {
    const label = imageLabel(x);
    const chips = [];
    if (x.has_text) chips.push(el('span', { class: 'chip text', text: 'text' }));
    if (x.duplicate) {
      chips.push(el('span', {
        class: 'chip dup', text: x.items > 1 ? x.items + ' copies' : 'near duplicate',
      }));
    }
    for (const t of (Array.isArray(x.tags) ? x.tags : []).slice(0, 3)) {
      chips.push(el('span', { class: 'chip', text: t }));
    }
    const size = x.width && x.height ? x.width + '×' + x.height : '';
    return el('li', { dataset: { testid: 'catalog-item', sha256: x.sha256 || '' } },
      el('a', { href: '#image/' + x.sha256, 'aria-label': 'Open ' + label },
        el('figure', null,
          thumb(pickOutput(x.outputs, 256), label, catBlobs),
          el('figcaption', null,
            el('span', { class: 'name', text: label }),
            x.caption ? el('span', { class: 'caption', text: x.caption }) : null,
            el('span', { class: 'meta', text: [x.format, size, fmtBytes(x.bytes)].filter(Boolean).join(' · ') }),
            chips.length ? el('span', { class: 'chips' }, ...chips) : null))));
  }

  async function loadCatalog(more) {
    const q = catalogQuery();
    if (more && catCursor) q.set('cursor', catCursor);
    const seq = ++catSeq;
    const status = $('catalog-status');
    let r;
    try {
      r = await api('/api/images?' + q.toString());
    } catch (e) {
      if (seq === catSeq) setStatus(status, 'Catalog: ' + errText(e), 'error');
      throw e;
    }
    if (seq !== catSeq) return;
    const imgs = (r && r.images) || [];
    const key = q.toString() + '\n' + imgs.map((x) => [x.sha256, x.items, x.caption].join('|')).join('\n');
    if (!more && key === catKey) return;
    const ul = $('catalog');
    if (!more) {
      catKey = key;
      revoke(catBlobs);
      ul.replaceChildren(...imgs.map(catalogTile));
      catShown = imgs.length;
    } else {
      ul.append(...imgs.map(catalogTile));
      catShown += imgs.length;
    }
    catCursor = r && r.next_cursor ? r.next_cursor : null;
    $('catalog-more').hidden = !catCursor;
    const filtered = [...q.keys()].some((k) => k !== 'limit' && k !== 'cursor');
    setStatus(status, catShown
      ? catShown + (catCursor ? '+' : '') + ' image' + (catShown === 1 && !catCursor ? '' : 's') +
        (filtered ? ' match' + (catShown === 1 && !catCursor ? 'es' : '') + ' the filters.' : '.')
      : (filtered ? 'No image matches the filters.' : 'No images yet: run a catalog (pipeline "catalog").'));
  }

  function reloadCatalog() {
    catKey = '';
    catCursor = null;
    quiet(() => loadCatalog(false));
  }

  let catTimer = 0;
  $('catalog-filters').addEventListener('submit', (ev) => {
    ev.preventDefault();
    reloadCatalog();
  });
  $('catalog-filters').addEventListener('input', (ev) => {
    if (ev.target.type !== 'search' && ev.target.type !== 'text') return;
    clearTimeout(catTimer);
    catTimer = setTimeout(reloadCatalog, 300);
  });
  $('catalog-filters').addEventListener('change', (ev) => {
    if (ev.target.type === 'search' || ev.target.type === 'text') return;
    reloadCatalog();
  });
  $('catalog-refresh').addEventListener('click', reloadCatalog);
  $('catalog-more').addEventListener('click', () => quiet(() => loadCatalog(true)));

  // The job filter lists the jobs the page knows, newest first.
  function syncJobOptions() {
    const sel = $('cat-job');
    const want = sel.value;
    const ids = [...jobs.keys()].sort((a, b) => b - a);
    const key = ids.map((id) => id + ':' + ((jobs.get(id).job || {}).name || '')).join(',');
    if (sel.dataset.key === key) return;
    sel.dataset.key = key;
    sel.replaceChildren(el('option', { value: '', text: 'all jobs' }),
      ...ids.map((id) => {
        const j = jobs.get(id).job || {};
        return el('option', { value: String(id), text: '#' + id + (j.name ? ' ' + j.name : '') + (j.pipeline ? ' (' + j.pipeline + ')' : '') });
      }));
    sel.value = ids.includes(Number(want)) ? want : '';
  }

  /* One image's page. */
  const pageBlobs = [];
  let pageSeq = 0;
  let mainScroll = 0;

  function linkTile(sha, label, detail) {
    return el('li', { dataset: { testid: 'img-neighbour', sha256: sha } },
      el('a', { href: '#image/' + sha, 'aria-label': 'Open ' + label },
        el('figure', null, thumb(detail.out, label, pageBlobs),
          el('figcaption', null, label, el('span', { class: 'meta', text: detail.meta })))));
  }

  function fact(dl, name, value) {
    if (value === undefined || value === null || value === '') return;
    dl.append(el('dt', { text: name }), el('dd', null, value));
  }

  function renderImage(d) {
    const a0 = (d.assets || [])[0] || {};
    const items = d.items || [];
    const label = imageLabel({ title: d.title, image: items.length ? items[0].image : '', sha256: d.sha256 });
    $('img-h').textContent = label;
    document.title = label + ' · pixmill';
    const big = pickOutput(a0.outputs, 1024);
    $('img-main').replaceChildren(big ? el('a', { href: big.url }, thumb(big, label, pageBlobs)) : thumb(null));

    const an = d.analysis || {};
    $('img-caption').textContent = an.caption ||
      'No caption: no vision model has described this image. The catalog pipeline runs the analyze stage when PIXMILL_VISION_URL and PIXMILL_VISION_MODEL are set.';
    $('img-caption').classList.toggle('empty', !an.caption);
    $('img-tags').replaceChildren(...(Array.isArray(an.tags) ? an.tags : []).map((t) => el('li', null,
      el('button', {
        type: 'button', class: 'small', text: t, 'aria-label': 'Show images tagged ' + t,
        onclick: () => {
          $('cat-tag').value = t;
          location.hash = '';
          reloadCatalog();
        },
      }))));

    const ocr = d.ocr || {};
    const text = typeof ocr.text === 'string' ? ocr.text.trim() : '';
    $('img-ocr').textContent = text || (d.ocr ? 'No text found.' : 'Not read: the pipeline had no ocr stage.');
    $('img-ocr-conf').textContent = text && typeof ocr.confidence === 'number'
      ? '(confidence ' + fmtNum(ocr.confidence, 0) + (d.has_text ? '' : ', low: probably not text') + ')' : '';

    const dl = $('img-meta');
    dl.replaceChildren();
    fact(dl, 'format', a0.format);
    fact(dl, 'size', a0.width && a0.height ? a0.width + ' × ' + a0.height + ' px' : '');
    fact(dl, 'file size', fmtBytes(a0.bytes));
    fact(dl, 'SHA-256', d.sha256);
    fact(dl, 'perceptual hash', a0.phash);
    fact(dl, 'sharpness', typeof a0.sharpness === 'number' ? fmtNum(a0.sharpness, 1) : '');
    if (a0.meta && typeof a0.meta.quality === 'number') fact(dl, 'quality score', fmtNum(a0.meta.quality, 1));
    if (Array.isArray(a0.colors) && a0.colors.length) {
      const sw = el('span');
      for (const c of a0.colors) {
        if (!c || typeof c.hex !== 'string' || !/^#[0-9a-f]{6}$/i.test(c.hex)) continue;
        const s = el('span', { class: 'swatch', title: c.hex + (typeof c.share === 'number' ? ' ' + Math.round(c.share * 100) + '%' : '') });
        s.style.background = c.hex;
        sw.append(s);
      }
      fact(dl, 'colours', sw);
    }
    const det = an.details || {};
    if (det.model) fact(dl, 'described by', det.model + (typeof det.tokens_in === 'number' ? ' (' + det.tokens_in + ' + ' + (det.tokens_out || 0) + ' tokens)' : ''));
    fact(dl, 'processed', fmtTime(a0.created));
    fact(dl, 'pipelines', (d.assets || []).map((a) => String(a.pipeline_hash || '').slice(0, 12)).join(', '));

    $('img-items').replaceChildren(...items.map((it) => el('tr', null,
      el('td', { text: '#' + it.job_id }), el('td', { text: it.key || '' }),
      el('td', { class: 'img', text: it.image || '' }), el('td', { text: it.title || '' }))));

    const outs = [];
    for (const a of d.assets || []) for (const o of a.outputs || []) outs.push(o);
    $('img-outputs').replaceChildren(...outs.map((o) => el('li', { dataset: { testid: 'img-output' } },
      el('figure', null,
        el('a', { href: o.url, title: 'Open ' + o.name }, thumb(pickOutput([o], 0), o.name, pageBlobs)),
        el('figcaption', null, o.name,
          el('span', { class: 'meta', text: [o.width && o.height ? o.width + '×' + o.height : '', fmtBytes(o.bytes)].filter(Boolean).join(' · ') }))))));

    const dup = d.duplicates || {};
    const near = Array.isArray(dup.near) ? dup.near : [];
    const notes = [];
    if (dup.exact) notes.push('Exact duplicates: ' + items.length + ' files or rows have these same bytes (listed above).');
    if (near.length) notes.push(near.length + ' near duplicate' + (near.length === 1 ? '' : 's') + ' (perceptual hash within ' + dup.near_distance + ' bits):');
    $('img-dup-note').textContent = notes.length ? notes.join(' ')
      : 'No duplicates: no other file has these bytes, and no other image is within ' + dup.near_distance + ' bits of its perceptual hash.';
    $('img-dupes').replaceChildren(...near.map((n) => linkTile(n.sha256, n.title || n.sha256.slice(0, 12),
      { out: pickOutput(n.outputs, 128), meta: 'distance ' + n.distance })));

    const sim = Array.isArray(d.similar) ? d.similar : [];
    $('img-sim-empty').hidden = sim.length > 0;
    $('img-similar').replaceChildren(...sim.map((n) => linkTile(n.sha256, n.title || n.sha256.slice(0, 12),
      { out: pickOutput(n.outputs, 128), meta: 'similarity ' + fmtNum(n.score, 2) })));
  }

  async function showImage(sha) {
    const seq = ++pageSeq;
    const page = $('image-page');
    if (!$('main').hidden) mainScroll = window.scrollY;
    $('main').hidden = true;
    page.hidden = false;
    revoke(pageBlobs);
    page.querySelectorAll('ul, tbody, dl, pre, #img-main').forEach((n) => n.replaceChildren());
    $('img-h').textContent = sha.slice(0, 12) + '…';
    $('img-caption').textContent = '';
    setStatus($('img-status'), 'Loading…');
    window.scrollTo(0, 0);
    $('img-h').focus({ preventScroll: true }); // screen readers: a new page
    try {
      const d = await api('/api/images/' + encodeURIComponent(sha));
      if (seq !== pageSeq) return;
      setStatus($('img-status'), '');
      renderImage(d);
    } catch (e) {
      if (seq === pageSeq) setStatus($('img-status'), 'Cannot show this image: ' + errText(e), 'error');
    }
  }

  function route() {
    const m = /^#image\/([0-9a-f]{64})$/.exec(location.hash);
    if (m) {
      showImage(m[1]);
      return;
    }
    if ($('image-page').hidden) return;
    pageSeq++;
    revoke(pageBlobs);
    $('image-page').hidden = true;
    $('main').hidden = false;
    document.title = 'pixmill';
    window.scrollTo(0, mainScroll);
  }
  window.addEventListener('hashchange', route);
  document.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape' && !$('image-page').hidden) location.hash = '';
  });

  /* ---- failed items ---- */

  let failedKey = '';

  async function loadFailed() {
    const r = await api('/api/failed?limit=100');
    const items = (r && r.items) || [];
    const key = JSON.stringify(items.map((i) => [i.job_id, i.key, i.code, i.error, i.attempts, i.updated]));
    if (key === failedKey) return;
    failedKey = key;
    const byJob = new Map();
    for (const it of items) {
      if (!byJob.has(it.job_id)) byJob.set(it.job_id, []);
      byJob.get(it.job_id).push(it);
    }
    const box = $('failed');
    box.replaceChildren(...[...byJob.entries()].map(([jobId, list]) => {
      const rows = list.map((it) => el('tr', { dataset: { testid: 'failed-item' } },
        el('td', { text: it.key || '' }),
        el('td', { class: 'img', text: it.image || '' }),
        el('td', { class: 'code', text: it.code || '' }),
        el('td', { class: 'msg', text: it.error || '' }),
        el('td', { text: it.attempts === undefined ? '' : String(it.attempts) }),
        el('td', { text: fmtTime(it.updated) })));
      const btn = el('button', {
        type: 'button', class: 'secondary', text: 'Retry failed items',
        'aria-label': 'Retry the failed items of job ' + jobId,
        dataset: { testid: 'retry-' + jobId },
        onclick: () => retryJob(jobId, btn),
      });
      return el('div', { class: 'failed-job', dataset: { testid: 'failed-job-' + jobId } },
        el('div', { class: 'failed-job-head' },
          el('h3', { text: 'Job #' + jobId + ': ' + list.length + ' failed' + (list.length >= 100 ? ' (first 100)' : '') }),
          btn),
        el('div', { class: 'table-wrap' },
          el('table', null,
            el('caption', { class: 'sr-only', text: 'Failed items of job ' + jobId }),
            el('thead', null, el('tr', null,
              ...['key', 'image', 'reason', 'message', 'attempts', 'updated'].map((h) => el('th', { scope: 'col', text: h })))),
            el('tbody', null, ...rows))));
    }));
    $('failed-empty').hidden = items.length > 0;
  }

  async function retryJob(jobId, btn) {
    const status = $('failed-status');
    btn.disabled = true;
    try {
      const r = await api('/api/jobs/' + jobId + '/retry', { method: 'POST' });
      setStatus(status, 'Job #' + jobId + ': ' + (r && r.retried !== undefined ? r.retried : '?') +
        ' item' + (r && r.retried === 1 ? '' : 's') + ' sent back, job ' + ((r && r.state) || 'queued') + '.', 'ok');
      failedKey = '';
      lastStates.set(jobId, (r && r.state) || 'queued');
      await quiet(loadFailed);
      await quiet(loadJobs);
    } catch (e) {
      setStatus(status, 'Retry of job #' + jobId + ' failed: ' + errText(e), 'error');
    } finally {
      btn.disabled = false;
    }
  }

  $('failed-refresh').addEventListener('click', () => { failedKey = ''; quiet(loadFailed); });

  /* ---- search ---- */

  const searchBlobs = [];

  function showResults(results, describe) {
    revoke(searchBlobs);
    $('search-results').replaceChildren(...results.map((r) => {
      const title = r.title || '(untitled)';
      return el('li', { dataset: { testid: 'search-result', sha256: r.sha256 || '' } },
        el('figure', null,
          thumb(pickOutput(r.outputs, 128), title, searchBlobs),
          el('figcaption', null, title, el('span', { class: 'meta', text: describe(r) }))));
    }));
  }

  $('search-text-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const q = $('search-q').value.trim();
    const status = $('search-status');
    if (!q) return;
    setStatus(status, 'Searching…');
    try {
      const r = await api('/api/search/text?' + new URLSearchParams({ q, limit: '20' }).toString());
      const results = (r && r.results) || [];
      showResults(results, (x) => ['job #' + x.job_id, x.key, typeof x.score === 'number' ? 'score ' + x.score.toFixed(2) : '']
        .filter(Boolean).join(' · '));
      setStatus(status, results.length ? results.length + ' result' + (results.length === 1 ? '' : 's') + ' for “' + q + '”.'
        : 'Nothing found for “' + q + '”.');
    } catch (e) {
      setStatus(status, 'Search failed: ' + errText(e), 'error');
    }
  });

  $('search-image-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const file = $('search-image').files[0];
    const status = $('search-status');
    if (!file) return;
    setStatus(status, 'Searching for images like ' + file.name + '…');
    try {
      const r = await api('/api/search/image?limit=12', {
        method: 'POST', body: file,
        headers: { 'Content-Type': file.type || 'application/octet-stream' },
      });
      const results = (r && r.results) || [];
      showResults(results, (x) => 'distance ' + x.distance);
      const ph = r && r.query && r.query.phash ? ' (phash ' + r.query.phash + ')' : '';
      setStatus(status, results.length ? results.length + ' similar image' + (results.length === 1 ? '' : 's') + ph + '.'
        : 'No similar images' + ph + '.');
    } catch (e) {
      setStatus(status, 'Image search failed: ' + errText(e), 'error');
    }
  });

  /* ---- health ---- */

  async function loadHealth() {
    let res;
    try {
      res = await fetch('/health', { headers: authHeaders(new Headers()), cache: 'no-store' });
    } catch (e) {
      setConn('bad', 'server unreachable');
      return;
    }
    if (res.status === 401) {
      // /health is protected (protect_ops): the API answers say the rest.
      setConn('ok', 'connected');
      return;
    }
    let h = null;
    try { h = await res.json(); } catch (e) { /* not JSON */ }
    const st = (h && h.status) || (res.ok ? 'ok' : 'HTTP ' + res.status);
    setConn(st === 'ok' ? 'ok' : 'bad', 'server ' + st + (h && h.version ? ' · pixmill ' + h.version : ''));
  }

  /* ---- loops ---- */

  async function quiet(fn) {
    try {
      await fn();
      return true;
    } catch (e) {
      if (e instanceof ApiError && e.status === 0) return false;
      if (e instanceof ApiError && e.status !== 401) setConn('bad', errText(e));
      return e;
    }
  }

  // Runs fn every ms (not while the tab is hidden), waiting longer when the
  // server says so with Retry-After.
  function every(ms, fn) {
    const tick = async () => {
      let wait = ms;
      if (!document.hidden) {
        const r = await quiet(fn);
        if (r instanceof ApiError && r.retryAfter) wait = Math.max(ms, r.retryAfter * 1000);
      }
      setTimeout(tick, wait);
    };
    tick();
  }

  function refreshAll() {
    quiet(loadJobs);
    quiet(loadGallery);
    quiet(() => loadCatalog(false));
    quiet(loadFailed);
    quiet(loadStats);
  }

  function init() {
    makeCharts();
    if (typeof ResizeObserver === 'function') {
      new ResizeObserver(() => resizeCharts()).observe($('charts'));
    }
    const mq = window.matchMedia ? window.matchMedia('(prefers-color-scheme: dark)') : null;
    if (mq && mq.addEventListener) mq.addEventListener('change', makeCharts);
    document.addEventListener('visibilitychange', () => {
      if (!document.hidden) refreshAll();
    });
    every(2000, loadStats);
    every(4000, loadJobs);
    every(8000, loadGallery);
    every(8000, loadFailed);
    every(10000, loadHealth);
    quiet(() => loadCatalog(false));
    route();
  }

  init();
})();
