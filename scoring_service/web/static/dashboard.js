// Leadership dashboard: reads the results API (with a key, or without once published)
// and draws tables and SVG charts locally. No external resources.
(function () {
  "use strict";
  const config = JSON.parse(document.getElementById("dashboard-config").textContent);
  const KEY = "scoring.dashboard.key";
  const GRADES = [["excellent", "优秀", "#1a7f37"], ["good", "良好", "#5aa55a"], ["pass", "合格", "#d9a21b"],
                  ["fail", "不合格", "#b42318"]];
  const GRADE_ORDER = {excellent: 1, good: 2, pass: 3, fail: 4};
  const $ = (id) => document.getElementById(id);
  const state = {round: null, me: null, districts: [], communities: [], names: {}, sort: {key: "rank", dir: 1}};
  const ROLE_NAMES = {admin: "管理员", leadership: "领导小组", district: "区级", agency: "测评机构", kiosk: "测评终端"};

  function headers() {
    const key = localStorage.getItem(KEY);
    return key ? {"Authorization": "Bearer " + key} : {};
  }
  async function api(path) {
    const r = await fetch("/api/v1/" + path, {headers: headers()});
    if (!r.ok) {
      const body = await r.json().catch(() => ({}));
      const error = new Error(body.message || ("HTTP " + r.status));
      error.status = r.status;
      throw error;
    }
    return r.json();
  }
  /** A write: resolves to {ok, status, body} whatever the answer (the caller explains refusals). */
  async function send(method, path, payload) {
    const r = await fetch("/api/v1/" + path, {method, headers: {...headers(), "Content-Type": "application/json"},
      body: JSON.stringify(payload)});
    return {ok: r.ok, status: r.status, body: await r.json().catch(() => ({}))};
  }
  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => node.setAttribute(k, v));
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }
  const fmt = (x, digits = 2) => (x === null || x === undefined ? "—" : Number(x).toFixed(digits));
  const pct = (x) => (x === null || x === undefined ? "—" : (100 * x).toFixed(1) + "%");
  const interval = (u) => (u ? `${u.rank_interval_90[0]}–${u.rank_interval_90[1]}` : "—");
  /** A 422's field errors in Chinese, for the line beside a form: "字段：说明；字段：说明", or the message
   * itself when no field is named. `names`: field → label. `messages`: [pattern, (match) => words] pairs, the
   * first match wins; a message none matches is shown as the service wrote it. `nested`: a field's object of
   * errors reads "父.子" (a label from `names` first); otherwise a value that is not a list is shown as JSON. */
  function fieldErrors(body, {names = {}, messages = [], nested = false} = {}) {
    const translate = (message) => {
      for (const [pattern, words] of messages) {
        const match = pattern.exec(message);
        if (match) return words(match);
      }
      return message;
    };
    const lines = (errors, parent) => Object.entries(errors || {}).flatMap(([field, value]) => {
      const label = names[field] || (parent ? `${parent}.${field}` : field);
      if (Array.isArray(value)) return value.map((message) => `${label}：${translate(String(message))}`);
      if (nested && typeof value === "object") return lines(value, label);
      return [`${label}：${translate(String(JSON.stringify(value)))}`];
    });
    const all = lines(body.errors);
    return all.length ? all.join("；") : translate(body.message || "");
  }
  function flagLabel(flag) {
    if (flag.startsWith("veto:")) return "一票否决：" + (config.check_texts[flag.slice(5)] || flag.slice(5));
    return config.flag_labels[flag] || flag;
  }

  // -- charts (SVG) ---------------------------------------------------------------
  const SVG = "http://www.w3.org/2000/svg";
  function svgEl(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    Object.entries(attrs).forEach(([k, v]) => node.setAttribute(k, v));
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function barChart(container, rows, segments, maxValue, label) {
    const left = 240, right = 70, rowH = 28, width = 900, top = 28;
    const height = top + rows.length * rowH + 10;
    const svg = svgEl("svg", {viewBox: `0 0 ${width} ${height}`, role: "presentation"});
    let x = left;
    segments.forEach(([, name, colour]) => {
      svg.appendChild(svgEl("rect", {x, y: 6, width: 12, height: 12, fill: colour}));
      svg.appendChild(svgEl("text", {x: x + 16, y: 17}, name));
      x += 16 + name.length * 14 + 24;
    });
    const scale = (width - left - right) / (maxValue || 1);
    rows.forEach((row, i) => {
      const y = top + i * rowH;
      svg.appendChild(svgEl("text", {x: left - 8, y: y + 18, "text-anchor": "end"}, row.label));
      let offset = left;
      segments.forEach(([key, name, colour]) => {
        const w = Math.max(0, (row.values[key] || 0) * scale);
        const rect = svgEl("rect", {x: offset, y: y + 4, width: w, height: rowH - 8, fill: colour});
        rect.appendChild(svgEl("title", {}, `${row.label} ${name}：${fmt(row.values[key])}`));
        svg.appendChild(rect);
        offset += w;
      });
      svg.appendChild(svgEl("text", {x: offset + 6, y: y + 18}, label(row)));
    });
    container.replaceChildren(svg);
  }

  // -- rendering ----------------------------------------------------------------------
  function renderDistricts() {
    const tbody = $("district-table").querySelector("tbody");
    tbody.replaceChildren();
    state.districts.forEach((d) => {
      const tr = el("tr");
      const u = d.uncertainty;
      tr.append(el("td", {class: "num"}, d.rank), el("td", {class: "num interval"}, interval(u)),
        // no reward pool (e.g. an aftercare round): no chance to show, not 0.0% for every district
        el("td", {class: "num"}, u && state.rewardPool ? pct(u.reward_share) : "—"), el("td", {}, d.name_zh || d.district_id),
        el("td", {class: "num"}, fmt(d.index)), el("td", {class: "num"}, fmt(d.quality)),
        el("td", {class: "num"}, fmt(d.progress)), el("td", {class: "num"}, d.quota),
        el("td", {class: "num"}, d.graded), el("td", {class: "num"}, pct(d.share_good_or_better)));
      tbody.append(tr);
    });
    barChart($("district-chart"),
      state.districts.map((d) => ({label: `${d.rank}. ${d.name_zh || d.district_id}`,
        values: {quality: 0.7 * d.quality, progress: 0.3 * d.progress}, index: d.index})),
      [["quality", "质量贡献（0.7×质量得分）", "#0b5cad"], ["progress", "进度贡献（0.3×进度得分）", "#7fb2e5"]],
      100, (row) => fmt(row.index));
    barChart($("grade-chart"),
      state.districts.map((d) => ({label: d.name_zh || d.district_id, values: d.grade_counts, quota: d.quota,
        graded: d.graded})),
      GRADES, Math.max(1, ...state.districts.map((d) => d.quota)), (row) => `${row.graded} / ${row.quota}`);
  }

  /** Scripts may add controls to each community row: {applies(round, me), add(cell, community, round)};
   * the column shows when one applies. */
  const communityActions = [];
  function addCommunityAction(action) { communityActions.push(action); }

  function renderCommunities() {
    const filter = $("district-filter").value;
    const {key, dir} = state.sort;
    const rows = state.communities.filter((c) => !filter || c.district_id === filter).slice().sort((a, b) => {
      const av = key === "grade_order" ? GRADE_ORDER[a.grade] || 9 : a[key];
      const bv = key === "grade_order" ? GRADE_ORDER[b.grade] || 9 : b[key];
      if (av === bv) return a.community_id < b.community_id ? -1 : 1;
      if (av === null || av === undefined) return 1;
      if (bv === null || bv === undefined) return -1;
      return (av < bv ? -1 : 1) * dir;
    });
    const tbody = $("community-table").querySelector("tbody");
    tbody.replaceChildren();
    const actions = communityActions.filter((action) => action.applies(state.round, state.me));
    $("community-actions-col").hidden = !actions.length;
    rows.forEach((c) => {
      const tr = el("tr", {"data-community": c.community_id});
      const flags = el("td");
      c.flags.forEach((f) => flags.append(el("span", {class: "flag" + (f.startsWith("veto:") ? " veto" : "")},
        flagLabel(f))));
      tr.append(el("td", {class: "num"}, c.rank ?? "—"), el("td", {class: "num interval"}, interval(c.uncertainty)),
        el("td", {}, c.name_zh),
        el("td", {}, state.names[c.district_id] || c.district_id), el("td", {class: "num"}, fmt(c.composite)),
        el("td", {class: "grade-" + (c.grade || "none")}, c.grade_zh || "待评定"), flags);
      if (actions.length) {  // e.g. the admin's survey links (dashboard-links.js)
        const cell = el("td", {class: "row-actions"});
        actions.forEach((action) => action.add(cell, c, state.round));
        tr.append(cell);
      }
      tbody.append(tr);
    });
    document.querySelectorAll("th button[data-sort]").forEach((b) => {
      b.setAttribute("aria-sort", b.dataset.sort === key ? (dir > 0 ? "ascending" : "descending") : "none");
    });
  }

  function renderRewards(rewards) {
    if (!rewards.pool_fen) {  // e.g. an aftercare round: no pool, nothing to split (the API lists 0-fen rows)
      $("reward-summary").textContent = "本轮测评不设奖励资金，不作奖励分配。";
      return;
    }
    const yuan = (fen) => (fen / 100).toLocaleString("zh-CN", {minimumFractionDigits: 2});
    $("reward-summary").textContent = `奖励资金共 ${yuan(rewards.pool_fen)} 元：区级 ${yuan(rewards.district_pool_fen)} 元分配给 ` +
      `${rewards.districts.length} 个区，小区级 ${yuan(rewards.community_pool_fen)} 元分配给 ${rewards.communities.length} ` +
      `个达到良好及以上的小区` + (rewards.unallocated_fen ? `，未分配 ${yuan(rewards.unallocated_fen)} 元。` : "。");
  }

  function renderFunnel(data) {
    const width = 900, height = 420, left = 60, right = 20, top = 20, bottom = 50;
    const points = data.points;
    const maxN = Math.max(10, ...points.map((p) => p.answers));
    const x = (n) => left + (width - left - right) * n / maxN;
    const y = (r) => top + (height - top - bottom) * (1 - r);
    const svg = svgEl("svg", {viewBox: `0 0 ${width} ${height}`, role: "presentation"});
    [0, 0.25, 0.5, 0.75, 1].forEach((r) => {
      svg.appendChild(svgEl("line", {x1: left, x2: width - right, y1: y(r), y2: y(r), stroke: "#e1e4e8"}));
      svg.appendChild(svgEl("text", {x: left - 8, y: y(r) + 4, "text-anchor": "end"}, `${r * 100}%`));
    });
    svg.appendChild(svgEl("text", {x: (left + width) / 2, y: height - 10, "text-anchor": "middle"}, "回答人数"));
    const sorted = points.slice().sort((a, b) => a.answers - b.answers);
    [["limits95", "#7fb2e5"], ["limits998", "#b42318"]].forEach(([key, colour]) => [0, 1].forEach((side) => {
      const d = sorted.map((p, i) => `${i ? "L" : "M"}${x(p.answers).toFixed(1)},${y(p[key][side]).toFixed(1)}`).join(" ");
      svg.appendChild(svgEl("path", {d, fill: "none", stroke: colour, "stroke-dasharray": "6 4"}));
    }));
    if (data.city_rate !== null) {
      svg.appendChild(svgEl("line", {x1: left, x2: width - right, y1: y(data.city_rate), y2: y(data.city_rate),
        stroke: "#1b1f24"}));
    }
    points.forEach((p) => {
      const dot = svgEl("circle", {cx: x(p.answers), cy: y(p.satisfaction_rate), r: 4,
        fill: p.flag ? "#b42318" : "#0b5cad", "data-community": p.community_id});
      dot.appendChild(svgEl("title", {}, `${p.name_zh}：满意率 ${pct(p.satisfaction_rate)}，${p.answers} 人回答`));
      svg.appendChild(dot);
    });
    $("funnel-chart").replaceChildren(svg);
    const list = $("funnel-outliers");
    list.replaceChildren(...points.filter((p) => p.flag).map((p) => el("li", {},
      `${p.name_zh}（${state.names[p.district_id] || p.district_id}）：满意率 ${pct(p.satisfaction_rate)}，` +
      (p.flag === "satisfaction_outlier_low" ? "显著低于全市水平" : "显著高于全市水平"))));
  }

  function loadRound(roundId) {
    $("message").textContent = "";
    $("round-note").textContent = "";
    state.round = state.rounds.find((r) => r.round_id === roundId) || {round_id: roundId};
    const status = {open: "测评进行中", closed: "已截止", published: "已发布"}[state.round.status] || "";
    $("round-status").textContent = status;
    $("round-status").classList.toggle("published", state.round.status === "published");
    Object.values(tabs).forEach((tab) => { tab.loadedFor = null; });
    loadActiveTab();
  }

  function progressRule(round) {
    return round.progress_rule || config.progress_rules[round.round_id] || "graded_share";
  }

  /** Empty the results of the round shown before: nothing of it may stay under another round's name. */
  function clearResults() {
    state.districts = []; state.communities = []; state.rewardPool = 0; state.resultsOf = null;
    $("snapshot").textContent = "";
    $("reward-summary").textContent = "";
    ["funnel-chart", "funnel-outliers"].forEach((id) => $(id).replaceChildren());
    renderDistricts(); renderCommunities();
  }
  let resultsSeq = 0;  // the latest round asked for: an older answer arriving late is dropped

  async function loadResults(round) {
    const roundId = round.round_id;
    const seq = ++resultsSeq;
    $("results-message").textContent = "";
    if (state.resultsOf !== roundId) clearResults();  // the same round again (a key entered) stays until replaced
    $("index-note").textContent = "综合指数 = 0.7 × 质量得分（各小区综合得分按户数加权平均）+ 0.3 × 进度得分（" +
      (progressRule(round) === "milestones" ? "各时间节点按期完成情况，详见“进度督办”" : "已评定小区数 / 计划数") + "）。";
    try {
      // the service's own draws and seed: a published round's are frozen in its snapshot, readable by
      // anyone (a district key, a visitor without a key); other draws or seeds need leadership or admin
      const u = "uncertainty=1";
      const [districts, communities, rewards] = await Promise.all([
        api(`rounds/${roundId}/rankings/districts?${u}`), api(`rounds/${roundId}/rankings/communities?${u}`),
        api(`rounds/${roundId}/rewards`)]);
      if (seq !== resultsSeq) return;
      api(`rounds/${roundId}/evidence/funnel`).then((data) => { if (seq === resultsSeq) renderFunnel(data); }).catch(() => {
        if (seq === resultsSeq) $("funnel-chart").replaceChildren(el("p", {class: "note"}, "漏斗图需要领导小组或管理员密钥。"));
      });
      state.districts = districts.districts;
      state.rewardPool = rewards.pool_fen;
      state.resultsOf = roundId;
      state.communities = communities.communities.concat(communities.unranked || []);
      state.names = Object.fromEntries(state.districts.map((d) => [d.district_id, d.name_zh]));
      $("snapshot").textContent = districts.published ? `结果已发布并冻结，快照 SHA-256：${districts.snapshot_sha256}` : "";
      const select = $("district-filter"), current = select.value;
      select.replaceChildren(el("option", {value: ""}, "全部"));
      state.districts.forEach((d) => select.append(el("option", {value: d.district_id}, d.name_zh || d.district_id)));
      select.value = current;
      renderDistricts(); renderCommunities(); renderRewards(rewards);
    } catch (e) {
      if (seq !== resultsSeq) return;
      clearResults();
      const district = state.me && state.me.role === "district";
      $("results-message").textContent = e.status === 401 || e.status === 403
        ? (district ? "区级密钥只能看已发布的测评结果；本区的工作进度请看“进度督办”。"
          : "该轮次结果尚未发布，请输入领导小组或管理员密钥。") : "加载失败：" + e.message;
    }
  }

  // -- tabs ---------------------------------------------------------------------------
  // A tab is a [role=tab] button with data-tab="name" and its panel; its script registers
  // {load(round)}, called when the tab is shown for a round it has not loaded yet, and optionally
  // {accepts(round), roundsText}: the rounds it is for (e.g. acceptance rounds only), in words.
  const tabs = {};
  const tabButtons = () => Array.from(document.querySelectorAll("[role=tab][data-tab]"));
  function registerTab(name, handlers) { tabs[name] = {...handlers, loadedFor: null}; }
  const accepts = (name, round) => !tabs[name] || !tabs[name].accepts || tabs[name].accepts(round);
  /** The latest round (by year, then opening time) a tab is for; any latest round if it is for none. */
  function defaultRound(name) {
    const rounds = state.rounds || [];
    const fit = rounds.filter((r) => accepts(name, r));
    const newest = (list) => list.slice().sort((a, b) => (b.year || 0) - (a.year || 0) ||
      String(b.opens_at || "").localeCompare(String(a.opens_at || "")) || (a.round_id < b.round_id ? 1 : -1))[0];
    return newest(fit.length ? fit : rounds);
  }
  function activeTab() {
    const selected = tabButtons().find((b) => b.getAttribute("aria-selected") === "true");
    return selected ? selected.dataset.tab : "results";
  }
  function selectTab(name) {
    tabButtons().forEach((b) => {
      const on = b.dataset.tab === name;
      b.setAttribute("aria-selected", on ? "true" : "false");
      b.tabIndex = on ? 0 : -1;
      $(b.getAttribute("aria-controls")).hidden = !on;
    });
  }
  function showTab(name, focus) {
    selectTab(name);
    if (focus) document.querySelector(`[role=tab][data-tab="${name}"]`).focus();
    history.replaceState(null, "", location.pathname + location.search + "#" + name);
    if (state.round && state.round.round_id && !accepts(name, state.round)) {  // e.g. 进度督办 of an aftercare round
      const other = defaultRound(name);
      if (other && accepts(name, other)) {
        $("round").value = other.round_id;
        loadRound(other.round_id);
        const title = document.querySelector(`[role=tab][data-tab="${name}"]`).textContent.trim();
        $("round-note").textContent = `“${title}”只适用于${tabs[name].roundsText || "部分轮次"}，` +
          `已切换到“${other.title || other.round_id}”。`;
        return;
      }
    }
    loadActiveTab();
  }
  function loadActiveTab(force) {
    const tab = tabs[activeTab()];
    if (!tab || !state.round || !state.round.round_id) return;
    if (!force && tab.loadedFor === state.round.round_id) return;
    tab.loadedFor = state.round.round_id;
    tab.load(state.round);
  }
  registerTab("results", {load: loadResults});
  document.querySelector("[role=tablist]").addEventListener("keydown", (e) => {
    const buttons = tabButtons(), i = buttons.indexOf(document.activeElement);
    if (i < 0) return;
    const next = {ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: buttons.length - 1}[e.key];
    if (next === undefined) return;
    e.preventDefault();
    showTab(buttons[(next + buttons.length) % buttons.length].dataset.tab, true);
  });
  tabButtons().forEach((b) => b.addEventListener("click", () => showTab(b.dataset.tab)));

  async function loadMe() {
    state.me = null; state.meRefused = false;
    if (localStorage.getItem(KEY)) {
      state.me = await api("keys/me").catch((e) => {
        state.meRefused = e.status === 401;  // not a key of this service, or revoked
        return null;
      });
    }
    const me = state.me;
    const role = me && (ROLE_NAMES[me.role] || me.role);
    $("who").textContent = !me ? "" : me.name === role ? `当前：${role}` : `当前：${me.name}（${role}）`;
  }

  async function loadRounds() {
    try {
      state.rounds = (await api("rounds")).items;
    } catch (e) {
      state.rounds = [];
      $("message").textContent = state.meRefused ? "访问密钥无效或已停用，请检查后重新输入。"
        : "请输入访问密钥以选择测评轮次。";
      return;
    }
    const select = $("round");
    select.replaceChildren(...state.rounds.map((r) => el("option", {value: r.round_id}, `${r.title}（${r.round_id}）`)));
    // the round asked for in the address, else the latest the shown tab is for
    const wanted = new URLSearchParams(location.search).get("round");
    const chosen = state.rounds.some((r) => r.round_id === wanted) ? wanted : (defaultRound(activeTab()) || {}).round_id;
    if (chosen) {
      select.value = chosen;
      loadRound(chosen);
    }
  }

  /** Fetch an export of the round with the key and save it under the name the service gives. */
  async function download(path, query, message) {
    const roundId = state.round && state.round.round_id;
    const params = new URLSearchParams(typeof query === "string" ? {format: query} : query);
    const r = await fetch(`/api/v1/rounds/${roundId}/${path}?${params}`, {headers: headers()});
    if (!r.ok) {
      const body = await r.json().catch(() => ({}));
      (message || $("results-message")).textContent = "导出失败：" + (body.message || "HTTP " + r.status);
      return;
    }
    const blob = await r.blob();
    const match = /filename\*=UTF-8''([^;]+)/.exec(r.headers.get("Content-Disposition") || "");
    const a = el("a", {href: URL.createObjectURL(blob), download: match ? decodeURIComponent(match[1]) : `export.${params.get("format")}`});
    document.body.append(a); a.click(); a.remove();
  }

  $("key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const key = $("key").value.trim();
    if (key) localStorage.setItem(KEY, key); else localStorage.removeItem(KEY);
    $("key").value = "";
    loadMe().then(() => {
      if (state.me && state.me.role === "district") selectTab("supervision");
      loadRounds();
    });
  });
  $("round").addEventListener("change", (e) => loadRound(e.target.value));
  $("district-filter").addEventListener("change", renderCommunities);
  document.querySelectorAll("th button[data-sort]").forEach((b) => b.addEventListener("click", () => {
    state.sort = {key: b.dataset.sort, dir: state.sort.key === b.dataset.sort ? -state.sort.dir : 1};
    renderCommunities();
  }));
  document.querySelectorAll("button[data-export]").forEach((b) =>
    b.addEventListener("click", () => download(b.dataset.export, b.dataset.format)));

  /** For tabs about the works themselves (milestones, funds): acceptance rounds only (SPEC §15). */
  const ACCEPTANCE_ROUNDS = {accepts: (round) => (round.kind || "acceptance") === "acceptance", roundsText: "验收轮次"};

  window.Dashboard = {config, state, $, el, api, send, download, fmt, pct, svgEl, registerTab, ACCEPTANCE_ROUNDS,
    fieldErrors,
    reload: () => loadActiveTab(true),
    headers, addCommunityAction, renderCommunities,
    canRecordIn: (districtId) => !!state.me && (state.me.role === "admin" ||
      (state.me.role === "district" && state.me.district_id === districtId))};

  // Tab scripts load after this one and register themselves; start once they have.
  document.addEventListener("DOMContentLoaded", async () => {
    await loadMe();
    const asked = location.hash.slice(1);
    selectTab(tabs[asked] ? asked : state.me && state.me.role === "district" ? "supervision" : "results");
    const wanted = new URLSearchParams(location.search).get("round");
    if (wanted && !localStorage.getItem(KEY)) {  // a published round needs no key
      state.rounds = [{round_id: wanted}];
      $("round").replaceChildren(el("option", {value: wanted}, wanted));
      loadRound(wanted);
    } else {
      loadRounds();
    }
  });
})();
