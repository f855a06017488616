// 历年趋势 tab (SPEC §15, §16): each district's index across rounds as SVG lines (GET /districts/{d}/history),
// and the 前治后乱 list of an aftercare round (GET /rounds/{r}/backsliding) with the drop and the items that
// fell most. A district key sees its own district. No external resources.
(function () {
  "use strict";
  const D = window.Dashboard;
  const {$, el, svgEl} = D;
  const KIND = {acceptance: "验收", aftercare: "长效管理"};
  const KIND_ORDER = {acceptance: 0, aftercare: 1};
  // distinguishable on white and for the common colour deficiencies; each line also carries its name
  const COLOURS = ["#0b5cad", "#d9480f", "#1a7f37", "#7048e8", "#b42318", "#0c8599", "#e67700", "#5c940d",
    "#c2255c", "#495057"];
  const tr = {seq: 0};

  const roundOrder = (a, b) => a.year - b.year || (KIND_ORDER[a.kind] ?? 9) - (KIND_ORDER[b.kind] ?? 9) ||
    (a.round_id < b.round_id ? -1 : a.round_id > b.round_id ? 1 : 0);
  const roundLabel = (r) => `${r.year}年${KIND[r.kind] || r.kind}`;
  const enc = encodeURIComponent;

  function clear() {
    $("tr-chart").replaceChildren();
    ["tr-table", "tr-backsliding"].forEach((id) => $(id).querySelector("tbody").replaceChildren());
    $("tr-table").querySelector("thead").replaceChildren();
    ["tr-b-note", "tr-unmanaged"].forEach((id) => { $(id).textContent = ""; });
  }

  function refused(e) {
    return {401: "历年趋势需要领导小组、管理员或区级密钥，请先在上方输入访问密钥。",
      403: "该密钥无权查看历年趋势（需要领导小组、管理员或本区的区级密钥）。"}[e.status] || "加载失败：" + e.message;
  }

  async function load(round) {
    const seq = ++tr.seq;
    $("tr-message").textContent = "";
    const me = D.state.me;
    let lines;
    try {
      const all = (await D.api("districts")).items;
      const shown = me && me.role === "district" ? all.filter((d) => d.district_id === me.district_id) : all;
      // a round still open with none of the district's communities graded has no index yet (the service
      // reports 0): left out, not drawn as a fall to 0
      const evaluated = (r) => r.published || r.graded > 0;
      lines = await Promise.all(shown.map((d) => D.api(`districts/${enc(d.district_id)}/history`)
        .then((body) => ({district: d, items: body.items.filter(evaluated)}))));
    } catch (e) {
      if (seq !== tr.seq) return;
      clear();
      $("tr-message").textContent = refused(e);
      return;
    }
    if (seq !== tr.seq) return;  // another round was chosen meanwhile
    const rounds = [];
    lines.forEach((line) => line.items.forEach((r) => {
      if (!rounds.some((x) => x.round_id === r.round_id)) rounds.push(r);
    }));
    rounds.sort(roundOrder);
    tr.names = Object.fromEntries(lines.map((l) => [l.district.district_id, l.district.name_zh || l.district.district_id]));
    drawLines(lines, rounds);
    fillTable(lines, rounds);
    loadBacksliding(round, seq);
  }

  // -- the lines -------------------------------------------------------------------------------
  function drawLines(lines, rounds) {
    const width = 900, height = 380, left = 64, right = 190, top = 20, bottom = 64;
    const values = lines.flatMap((l) => l.items.map((r) => r.index));
    if (!rounds.length) {
      $("tr-chart").replaceChildren(el("p", {class: "note"}, "还没有测评轮次的结果。"));
      return;
    }
    // the y axis from a round ten below the lowest index to 100
    const low = Math.max(0, Math.min(80, Math.floor((Math.min(...values) - 5) / 10) * 10));
    const x = (i) => left + (rounds.length === 1 ? (width - left - right) / 2
      : (width - left - right) * (0.05 + 0.9 * i / (rounds.length - 1)));
    const y = (v) => top + (height - top - bottom) * (100 - v) / (100 - low);
    const svg = svgEl("svg", {viewBox: `0 0 ${width} ${height}`, role: "presentation"});
    for (let v = low; v <= 100; v += 10) {
      svg.appendChild(svgEl("line", {x1: left, x2: width - right, y1: y(v), y2: y(v), stroke: "#e1e4e8"}));
      svg.appendChild(svgEl("text", {x: left - 8, y: y(v) + 4, "text-anchor": "end"}, String(v)));
    }
    svg.appendChild(svgEl("text", {x: 16, y: (top + height - bottom) / 2, "text-anchor": "middle",
      transform: `rotate(-90 16 ${(top + height - bottom) / 2})`}, "综合指数"));
    rounds.forEach((r, i) => {
      const label = svgEl("text", {x: x(i), y: height - bottom + 20, "text-anchor": "middle", class: "tr-round",
        "data-round": r.round_id}, roundLabel(r));
      label.appendChild(svgEl("title", {}, `${r.title || r.round_id}（${r.round_id}）`));
      svg.appendChild(label);
      svg.appendChild(svgEl("line", {x1: x(i), x2: x(i), y1: height - bottom, y2: height - bottom + 5, stroke: "#57606a"}));
    });
    svg.appendChild(svgEl("line", {x1: left, x2: width - right, y1: height - bottom, y2: height - bottom,
      stroke: "#57606a"}));
    svg.appendChild(svgEl("text", {x: (left + width - right) / 2, y: height - 12, "text-anchor": "middle"},
      "测评轮次（按年份）"));
    lines.forEach((line, n) => {
      const colour = COLOURS[n % COLOURS.length];
      const id = line.district.district_id, name = tr.names[id];
      const group = svgEl("g", {class: "tr-line", "data-district": id});
      // a segment joins two rounds next to each other on the axis; a round without the district breaks it
      const at = Object.fromEntries(line.items.map((r) => [r.round_id, r]));
      let d = "", previous = false;
      rounds.forEach((r, i) => {
        const row = at[r.round_id];
        if (row) d += `${previous ? "L" : "M"}${x(i).toFixed(1)},${y(row.index).toFixed(1)} `;
        previous = !!row;
      });
      group.appendChild(svgEl("path", {d: d.trim(), fill: "none", stroke: colour, "stroke-width": 2.5}));
      rounds.forEach((r, i) => {
        const row = at[r.round_id];
        if (!row) return;
        const dot = svgEl("circle", {cx: x(i), cy: y(row.index), r: 4.5, fill: colour, "data-round": r.round_id});
        dot.appendChild(svgEl("title", {}, `${name} ${roundLabel(r)}：综合指数 ${D.fmt(row.index)}` +
          `（质量 ${D.fmt(row.quality)}，进度 ${D.fmt(row.progress)}）`));
        group.appendChild(dot);
      });
      svg.appendChild(group);
      // the legend, beside the chart
      const ly = top + 8 + n * 24;
      const item = svgEl("g", {class: "tr-legend", "data-district": id});
      item.appendChild(svgEl("line", {x1: width - right + 16, x2: width - right + 40, y1: ly, y2: ly, stroke: colour,
        "stroke-width": 3}));
      item.appendChild(svgEl("circle", {cx: width - right + 28, cy: ly, r: 4, fill: colour}));
      item.appendChild(svgEl("text", {x: width - right + 46, y: ly + 4}, name.replace(/（.*）$/, "")));
      svg.appendChild(item);
    });
    $("tr-chart").replaceChildren(svg);
  }

  function fillTable(lines, rounds) {
    const head = el("tr");
    head.append(el("th", {scope: "col"}, "区"), ...rounds.map((r) => {
      const th = el("th", {scope: "col", class: "num", title: r.title || r.round_id}, roundLabel(r));
      th.append(el("span", {class: "deadline"}, r.round_id));
      return th;
    }));
    $("tr-table").querySelector("thead").replaceChildren(head);
    $("tr-table").querySelector("tbody").replaceChildren(...lines.map((line) => {
      const at = Object.fromEntries(line.items.map((r) => [r.round_id, r]));
      const row = el("tr", {"data-district": line.district.district_id});
      row.append(el("th", {scope: "row"}, tr.names[line.district.district_id]), ...rounds.map((r) =>
        el("td", {class: "num", "data-round": r.round_id}, at[r.round_id] ? D.fmt(at[r.round_id].index) : "—")));
      return row;
    }));
  }

  // -- 前治后乱 ------------------------------------------------------------------------------------
  function latestAftercare(round) {
    if (round.kind === "aftercare") return round;
    const care = (D.state.rounds || []).filter((r) => r.kind === "aftercare");
    care.sort((a, b) => b.year - a.year || String(b.opens_at).localeCompare(String(a.opens_at)));
    return care[0] || null;
  }

  function fallenText(item) {
    const earlier = item.compares_to.map((c) => `“${c.name_zh}”`).join("");
    return `${item.name_zh} 下降 ${D.fmt(-item.change)} 分（验收时对应${earlier}）`;
  }

  async function loadBacksliding(round, seq) {
    const care = latestAftercare(round);
    const tbody = $("tr-backsliding").querySelector("tbody");
    if (!care) {
      tbody.replaceChildren();
      $("tr-b-note").textContent = "还没有长效管理测评轮次。";
      $("tr-unmanaged").textContent = "";
      return;
    }
    let body;
    try {
      body = await D.api(`rounds/${enc(care.round_id)}/backsliding`);
    } catch (e) {
      if (seq !== tr.seq) return;
      tbody.replaceChildren();
      $("tr-b-note").textContent = "";
      $("tr-message").textContent = refused(e);
      return;
    }
    if (seq !== tr.seq) return;
    $("tr-b-note").dataset.round = care.round_id;
    $("tr-b-note").textContent = `${care.title || care.round_id}：各小区本轮综合得分与其验收时（最近一次已发布的验收轮次）` +
      `的综合得分相比，下降 10 分及以上的列为“前治后乱”，下降最多的在前；“下降最多的项目”把长效管理的测评项目与验收时` +
      `对应的“十一要”项目相比。` + (body.published ? "本轮结果已发布。" : "本轮测评进行中，数字会随新的问卷和检查变化。");
    const rows = body.communities.map((c) => {
      const row = el("tr", {"data-community": c.community_id});
      const items = el("ul", {class: "fallen"});
      c.fallen_items.slice(0, 3).forEach((item) => items.append(el("li", {"data-item": item.code}, fallenText(item))));
      const flags = el("td");
      c.flags.filter((f) => f === "management_missing").forEach((f) =>
        flags.append(el("span", {class: "flag"}, D.config.flag_labels[f] || "后续管理未落实")));
      const fell = el("td", {}, c.fallen_items.length ? null : "—");
      if (c.fallen_items.length) fell.append(items);
      row.append(el("th", {scope: "row"}, c.name_zh), el("td", {}, tr.names[c.district_id] || c.district_id),
        el("td", {class: "num"}, D.fmt(c.baseline)), el("td", {class: "num"}, D.fmt(c.composite)),
        el("td", {class: "num drop"}, D.fmt(-c.change)), fell, flags);
      return row;
    });
    if (!rows.length) {
      const none = el("tr");
      none.append(el("td", {colspan: 7}, "没有综合得分下降 10 分及以上的小区。"));
      rows.push(none);
    }
    tbody.replaceChildren(...rows);
    $("tr-unmanaged").textContent = body.management_missing.length
      ? "后续管理未落实（验收轮次没有登记“后续管理落实”）的小区：" + body.management_missing.map((m) =>
        `${m.name_zh}（${tr.names[m.district_id] || m.district_id}）`).join("、") + "。"
      : "";
  }

  D.registerTab("trends", {load});
})();
