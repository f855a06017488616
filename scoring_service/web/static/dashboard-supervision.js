// 进度督办 tab (SPEC §11, §16): each community's milestones at a date, each district's progress,
// the warnings in words, the 督办通报 downloads, and recording a milestone (an admin, or the
// district key of the community's district). Reads GET /rounds/{r}/supervision; no external resources.
(function () {
  "use strict";
  const D = window.Dashboard;
  const {config, $, el} = D;
  const MILESTONES = config.milestones;
  const NAME = Object.fromEntries(MILESTONES.map((m) => [m.code, m.name_zh]));
  const CARRIES = Object.fromEntries(MILESTONES.map((m) => [m.code, m.carries]));
  // A symbol and words with every colour, so the grid reads without colour too.
  const SYMBOL = {on_time: "✓", done: "✓", late: "▲", overdue: "✗", pending: "○"};
  const FIELD_NAMES = {reached_on: "完成日期", votes: "表决票数", eligible_households: "有表决权的户数",
    participants: "参与表决的户数", in_favour: "同意的户数", management_mode: "后续管理方式",
    changed_reason: "修改原因", note: "备注", community_id: "小区"};
  const DATE = String.raw`(\d{4}-\d{2}-\d{2})`;
  // The service's refusals (SPEC §11 rules) in Chinese; anything else is shown as the service wrote it.
  const MESSAGES = [
    [new RegExp(`^must not be after today \\(${DATE}, China time\\)$`), (m) => `不能晚于今天（${m[1]}）`],
    [new RegExp(`^must not be before (\\w+) \\(${DATE}\\)$`), (m) => `不能早于“${NAME[m[1]] || m[1]}”的完成日期（${m[2]}）`],
    [new RegExp(`^must not be after (\\w+) \\(${DATE}\\)$`), (m) => `不能晚于“${NAME[m[1]] || m[1]}”的完成日期（${m[2]}）`],
    [new RegExp(`^is required to replace the recorded \\w+ \\(version (\\d+), reached on ${DATE}\\)$`),
      (m) => `该节点已登记（第 ${m[1]} 版，完成日期 ${m[2]}），修改时必须填写原因`],
    [/^is required for \w+$/, () => "必须填写"],
    [/^only \w+ carries/, () => "这个节点不需要填写"],
    [/^eligible_households must be at least 1$/, () => "有表决权的户数至少为 1"],
    [/^participants \((\d+)\) must not exceed eligible_households \((\d+)\)$/,
      (m) => `参与表决的户数（${m[1]}）不能多于有表决权的户数（${m[2]}）`],
    [/^in_favour \((\d+)\) must not exceed participants \((\d+)\)$/,
      (m) => `同意的户数（${m[1]}）不能多于参与表决的户数（${m[2]}）`],
    [/^is not covered by round/, () => "该小区不在本轮次的改造范围内"],
    [/^Not a valid date\.$/, () => "日期格式不正确"],
    [/^Missing data for required field\.$/, () => "必须填写"],
    [/^Not a valid integer\.$/, () => "必须是整数"],
    [/^Must be greater than or equal to (\d+)/, (m) => `不能小于 ${m[1]}`],
    [/^Longer than maximum length (\d+)/, (m) => `不能超过 ${m[1]} 个字`],
  ];
  const sv = {round: null, asOf: null, district: "", report: null, seq: 0, names: {}, rows: {}, editing: null,
    focusAfter: null};

  const dateZh = (iso) => (iso ? `${Number(iso.slice(0, 4))}年${Number(iso.slice(5, 7))}月${Number(iso.slice(8))}日` : "");
  function short(iso) {  // the round's own year goes without saying
    const year = String((sv.round && sv.round.year) || sv.report.as_of.slice(0, 4));
    return iso.slice(0, 4) === year ? iso.slice(5) : iso;
  }
  const districtName = (d) => d.name_zh || d.district_id;
  const communityName = (id) => sv.names[id] || id;

  // -- reading the report -------------------------------------------------------------------
  function load(round) {
    if (!sv.round || sv.round.round_id !== round.round_id) {
      sv.asOf = null;
      sv.district = "";
    }
    sv.round = round;
    const me = D.state.me, scoped = !!me && me.role === "district";
    $("sv-district-box").hidden = scoped;
    $("sv-scope").hidden = !scoped;
    if (scoped) sv.district = "";  // the service shows a district key its own district only
    fetchReport();
  }

  async function fetchReport() {
    const seq = ++sv.seq;
    $("sv-message").textContent = "";
    const query = new URLSearchParams();
    if (sv.asOf) query.set("as_of", sv.asOf);
    if (sv.district) query.set("district_id", sv.district);
    let report;
    try {
      report = await D.api(`rounds/${encodeURIComponent(sv.round.round_id)}/supervision` +
        (query.toString() ? "?" + query : ""));
    } catch (e) {
      if (seq !== sv.seq) return;
      $("sv-message").textContent = {
        401: "进度督办需要领导小组、管理员或区级密钥，请先在上方输入访问密钥。",
        403: "该密钥无权查看进度督办（需要领导小组、管理员或本区的区级密钥）。",
        404: "找不到该测评轮次。",
        422: "统计日期不正确：" + e.message,
      }[e.status] || "加载失败：" + e.message;
      sv.report = null;
      ["sv-warnings", "sv-summary"].forEach((id) => $(id).replaceChildren());
      ["sv-district-table", "sv-grid"].forEach((id) => $(id).querySelector("tbody").replaceChildren());
      return;
    }
    if (seq !== sv.seq) return;  // a newer request (another date or district) has been made
    sv.report = report;
    render();
  }

  function render() {
    const report = sv.report;
    sv.names = Object.fromEntries(report.communities.map((c) => [c.community_id, c.name_zh || c.community_id]));
    sv.rows = Object.fromEntries(report.communities.map((c) => [c.community_id, c]));
    $("sv-as-of").value = report.as_of;
    if (!sv.district && !$("sv-district-box").hidden) {  // the whole round: offer each of its districts
      const select = $("sv-district");
      select.replaceChildren(el("option", {value: ""}, "全部"), ...report.districts.slice()
        .sort((a, b) => (a.district_id < b.district_id ? -1 : 1))
        .map((d) => el("option", {value: d.district_id}, districtName(d))));
      select.value = "";
    }
    if (!$("sv-scope").hidden && report.districts.length) {
      $("sv-scope").textContent = "本区：" + districtName(report.districts[0]);
    }
    renderSummary(report);
    renderWarnings(report);
    renderDistricts(report);
    renderGrid(report);
    if (sv.focusAfter) {
      const {community, code} = sv.focusAfter;
      sv.focusAfter = null;
      const cell = $("sv-grid").querySelector(`button[data-community="${CSS.escape(community)}"][data-code="${code}"]`);
      if (cell) cell.focus();
    }
  }

  function renderSummary(report) {
    const warned = report.districts.filter((d) => d.warning);
    const due = report.districts.length ? report.districts[0].milestones_due : 0;
    let text = `统计截至${dateZh(report.as_of)}，已到截止日期的时间节点有 ${due} 个。`;
    if (report.districts.length === 1) {
      const d = report.districts[0];
      text += `${districtName(d)}进度得分 ${D.fmt(d.progress)}，` + (d.warning ? "已列入警示督办。" : "暂无警示。");
    } else {
      text += `${report.districts.length} 个区中有 ${warned.length} 个区需要警示督办。`;
    }
    $("sv-summary").textContent = text;
    const late = sv.round.late_credit ?? 0.5;
    $("sv-progress-note").textContent =
      `进度得分 = 100 ×（各小区已到期节点的得分之和）÷（计划改造小区数 × 已到期节点数），最高 100 分：` +
      `按期完成得 1 分，逾期完成得 ${late} 分，未完成得 0 分，计划内未登记的小区按 0 分计；还没有节点到期时为 100 分。` +
      (report.progress_rule === "milestones" ? "本轮次综合指数中的进度得分就按此计算。"
        : "本轮次综合指数中的进度得分按已评定小区数 / 计划数计算，此处的进度得分仅供督办参考。") +
      (report.districts.length > 1 ? "进度慢的区排在前面。" : "");
  }

  function reasonSentence(code, d, concerned) {
    switch (code) {
      case "overdue_milestones": return `${d.overdue_communities} 个小区有逾期未完成的时间节点（计划改造 ${d.quota} 个）`;
      case "communities_missing": return `已登记 ${d.communities} 个小区，少于计划改造的 ${d.quota} 个，且方案审定的截止日期已过`;
      case "construction_below_pass": return `${concerned} 个小区施工阶段专业检查得分低于合格线`;
      case "rectifications_overdue": return `${concerned} 个小区有整改事项逾期未完成`;
      case "accepted_but_failing": return `${concerned} 个小区已完成验收，但测评等级为不合格或尚未评定`;
      default: return "";
    }
  }

  function renderWarnings(report) {
    const list = $("sv-warnings");
    const warned = report.districts.filter((d) => d.warning);
    if (!warned.length) {
      list.replaceChildren(el("li", {class: "none"}, report.districts.length === 1
        ? `截至该日期，${districtName(report.districts[0])}没有需要警示督办的事项。` : "截至该日期，没有需要警示督办的区。"));
      return;
    }
    list.replaceChildren(...warned.map((d) => {
      const item = el("li", {"data-district": d.district_id});
      const head = el("p", {class: "warn-head"});
      head.append(el("span", {class: "warn-mark", "aria-hidden": "true"}, "⚠"), el("strong", {}, districtName(d)),
        `（进度得分 ${D.fmt(d.progress)}）`);
      const reasons = el("ul");
      d.reasons.forEach((r) => {
        const line = el("li", {"data-reason": r.code});
        line.append(el("span", {class: "reason"}, config.reason_labels[r.code] || r.code),
          "：" + reasonSentence(r.code, d, r.communities.length) + "。");
        if (r.communities.length) line.append(el("span", {class: "concerned"}, "涉及小区：" +
          r.communities.map(communityName).join("、") + "。"));
        reasons.append(line);
      });
      item.append(head, reasons);
      return item;
    }));
  }

  function renderDistricts(report) {
    const tbody = $("sv-district-table").querySelector("tbody");
    tbody.replaceChildren(...report.districts.map((d) => {
      const tr = el("tr", {"data-district": d.district_id, class: d.warning ? "warned" : ""});
      tr.append(el("th", {scope: "row"}, districtName(d)), el("td", {class: "num progress"}, D.fmt(d.progress)),
        ...[d.quota, d.communities, d.milestones_due, d.on_time, d.late, d.overdue, d.overdue_communities]
          .map((n) => el("td", {class: "num"}, n)),
        el("td", {class: d.warning ? "warn" : ""}, d.warning ? "⚠ 警示督办" : "—"));
      return tr;
    }));
  }

  // -- the grid ----------------------------------------------------------------------------
  function cellLines(m) {
    switch (m.status) {
      case "on_time": case "done": return [short(m.reached_on)];
      case "late": return [short(m.reached_on), `晚${m.days_late}天`];
      case "overdue": return [`逾期${m.days_overdue}天`];
      default: return [m.deadline ? `${short(m.deadline)}前` : "未完成"];
    }
  }

  function statusWords(m) {
    switch (m.status) {
      case "on_time": return "按期完成";
      case "done": return "已完成（无截止日期）";
      case "late": return `逾期完成，晚了 ${m.days_late} 天`;
      case "overdue": return `逾期未完成，已逾期 ${m.days_overdue} 天`;
      default: return m.deadline ? "未完成，还没到截止日期" : "未完成（无截止日期）";
    }
  }

  function renderGrid(report) {
    const head = el("tr");
    head.append(el("th", {scope: "col", class: "corner"}, "小区"));
    MILESTONES.forEach((m) => {
      const th = el("th", {scope: "col", "data-code": m.code});
      const deadline = report.deadlines[m.code];
      th.append(el("span", {class: "ms-name"}, m.name_zh),
        el("span", {class: "deadline"}, deadline ? `截止 ${short(deadline)}` : "无截止日期"));
      head.append(th);
    });
    $("sv-grid").querySelector("thead").replaceChildren(head);
    const order = report.districts.map((d) => d.district_id);
    const byDistrict = {};
    report.communities.forEach((c) => (byDistrict[c.district_id] = byDistrict[c.district_id] || []).push(c));
    const names = Object.fromEntries(report.districts.map((d) => [d.district_id, districtName(d)]));
    const rows = [];
    Object.keys(byDistrict).sort((a, b) => order.indexOf(a) - order.indexOf(b)).forEach((districtId) => {
      if (report.districts.length > 1) {
        const group = el("tr", {class: "group"});
        group.append(el("th", {scope: "colgroup", colspan: String(MILESTONES.length + 1)},
          `${names[districtId] || districtId}（${byDistrict[districtId].length} 个小区）`));
        rows.push(group);
      }
      byDistrict[districtId].forEach((c) => rows.push(gridRow(c)));
    });
    $("sv-grid").querySelector("tbody").replaceChildren(...rows);
    const writer = D.state.me && (D.state.me.role === "admin" || D.state.me.role === "district");
    $("sv-grid-note").textContent = "把鼠标移到格子上，或用 Tab 键选中格子，可以看到截止日期、完成日期和逾期天数。" +
      (writer ? "点击格子（或选中后按回车键）可以登记完成日期。" : "");
  }

  function gridRow(c) {
    const tr = el("tr", {"data-community": c.community_id});
    const name = el("th", {scope: "row"}, c.name_zh || c.community_id);
    if (c.flags.includes("accepted_but_failing")) name.append(el("span", {class: "flag veto"}, "已验收但不合格"));
    tr.append(name);
    const writable = D.canRecordIn(c.district_id);
    MILESTONES.forEach((m) => {
      const state = c.milestones[m.code];
      const button = el("button", {type: "button", class: `ms ms-${state.status}`, "data-community": c.community_id,
        "data-code": m.code, "data-status": state.status, "aria-describedby": "sv-tip"});
      if (writable) button.setAttribute("aria-haspopup", "dialog");
      const [first, second] = cellLines(state);
      button.append(el("span", {class: "sym", "aria-hidden": "true"}, SYMBOL[state.status]), " " + first);
      if (second) button.append(el("span", {class: "sub"}, second));
      const td = el("td");
      td.append(button);
      tr.append(td);
    });
    return tr;
  }

  // -- the tooltip: on hover and on keyboard focus; Escape hides it ----------------------------
  function tipLines(button) {
    const c = sv.rows[button.dataset.community], code = button.dataset.code, m = c.milestones[code];
    const lines = [`${c.name_zh || c.community_id} · ${NAME[code]}`, `截止日期：${m.deadline || "无"}`];
    let reached = m.reached_on ? `完成日期：${m.reached_on}` : "完成日期：未登记";
    if (m.reached_on && m.reached_on > sv.report.as_of) reached += "（晚于统计日期，按未完成计）";
    lines.push(reached, `状态：${SYMBOL[m.status]} ${statusWords(m)}`);
    if (m.votes) {
      lines.push(`居民表决：有表决权 ${m.votes.eligible_households} 户，参与 ${m.votes.participants} 户，` +
        `同意 ${m.votes.in_favour} 户，` + (m.votes.passed ? "通过" : "未通过（按未完成计）"));
    }
    if (m.management_mode) lines.push(`管理方式：${config.management_modes[m.management_mode] || m.management_mode}`);
    if (D.canRecordIn(c.district_id)) lines.push("点击或按回车键登记");
    return lines;
  }

  function showTip(button) {
    const tip = $("sv-tip");
    sv.tipAt = button;
    tip.replaceChildren(...tipLines(button).map((line, i) => el(i ? "div" : "strong", {}, line)));
    tip.hidden = false;
    const r = button.getBoundingClientRect(), w = tip.offsetWidth, h = tip.offsetHeight;
    let top = r.bottom + 6;
    if (top + h > window.innerHeight - 4) top = Math.max(4, r.top - h - 6);
    tip.style.left = Math.max(4, Math.min(r.left, window.innerWidth - w - 4)) + "px";  // CSSOM: allowed by the CSP
    tip.style.top = top + "px";
  }
  const hideTip = () => { $("sv-tip").hidden = true; sv.tipAt = null; };
  function followScroll() {  // focusing a cell may scroll it into view: the tip follows while it shows
    const at = sv.tipAt;
    if (!at || $("sv-tip").hidden) return;
    const r = at.getBoundingClientRect(), box = $("sv-grid-wrap").getBoundingClientRect();
    if (!at.isConnected || r.bottom < box.top || r.top > box.bottom || r.right < box.left || r.left > box.right) hideTip();
    else showTip(at);
  }
  const cellOf = (target) => (target instanceof Element ? target.closest("button.ms[data-code]") : null);

  const grid = $("sv-grid");
  grid.addEventListener("mouseover", (e) => { const b = cellOf(e.target); if (b) showTip(b); });
  grid.addEventListener("mouseout", (e) => {  // back to the focused cell's tip, if any
    if (!cellOf(e.target) || cellOf(e.relatedTarget)) return;
    const focused = cellOf(document.activeElement);
    if (focused && grid.contains(focused)) showTip(focused); else hideTip();
  });
  grid.addEventListener("focusin", (e) => { const b = cellOf(e.target); if (b) showTip(b); });
  grid.addEventListener("focusout", hideTip);
  document.addEventListener("keydown", (e) => { if (e.key === "Escape") hideTip(); });
  $("sv-grid-wrap").addEventListener("scroll", followScroll, {passive: true});
  window.addEventListener("scroll", followScroll, {passive: true});
  grid.addEventListener("click", (e) => {
    const b = cellOf(e.target);
    if (b && D.canRecordIn(sv.rows[b.dataset.community].district_id)) openForm(b.dataset.community, b.dataset.code);
  });

  // -- recording a milestone ---------------------------------------------------------------
  const dialog = $("sv-dialog");
  Object.entries(config.management_modes).forEach(([value, name]) => $("sv-mode").append(el("option", {value}, name)));

  function milestonePath(communityId, code) {
    return `rounds/${encodeURIComponent(sv.round.round_id)}/communities/${encodeURIComponent(communityId)}` +
      `/milestones/${code}`;
  }

  function showField(id, shown, inputs) {
    $(id).hidden = !shown;
    inputs.forEach((input) => { $(input).required = shown; });
  }

  async function openForm(communityId, code) {
    const row = sv.rows[communityId], m = row.milestones[code];
    let current = null;
    try {
      current = await D.api(milestonePath(communityId, code));
    } catch (e) {
      if (e.status !== 404) { $("sv-message").textContent = "读取已登记的节点失败：" + e.message; return; }
    }
    const replacing = !!current && !current.withdrawn;
    sv.editing = {communityId, code, replacing};
    $("sv-form-title").textContent = `登记：${row.name_zh || communityId} · ${NAME[code]}`;
    $("sv-form-context").textContent = `截止日期：${m.deadline || "无"}；目前：${statusWords(m)}` +
      (replacing ? `；已登记的完成日期为 ${current.reached_on}（第 ${current.version} 版）。` : "。");
    $("sv-reached").value = replacing ? current.reached_on : "";
    $("sv-note").value = (replacing && current.note) || "";
    $("sv-reason").value = "";
    showField("sv-votes", CARRIES[code] === "votes", ["sv-eligible", "sv-participants", "sv-favour"]);
    const votes = (replacing && current.votes) || {};
    $("sv-eligible").value = votes.eligible_households ?? "";
    $("sv-participants").value = votes.participants ?? "";
    $("sv-favour").value = votes.in_favour ?? "";
    showField("sv-mode-field", CARRIES[code] === "management_mode", ["sv-mode"]);
    $("sv-mode").value = (replacing && current.management_mode) || "";
    showField("sv-reason-field", replacing, ["sv-reason"]);
    $("sv-form-error").textContent = "";
    hideTip();
    dialog.showModal();
    $("sv-reached").focus();
  }

  function refusal(result) {
    const body = result.body || {};
    switch (result.status) {
      case 422: return `未能保存：${D.fieldErrors(body, {names: FIELD_NAMES, messages: MESSAGES, nested: true})}。`;
      case 401: return "未能保存：访问密钥无效或已停用，请重新输入密钥。";
      case 403: return "未能保存：该密钥无权登记这个小区的时间节点（只有管理员和本区的区级密钥可以登记）。";
      case 404: return "未能保存：找不到该小区或时间节点。";
      case 429: return "未能保存：操作太频繁，请稍后再试。";
      default: return "未能保存：" + (body.message || "HTTP " + result.status);
    }
  }

  $("sv-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const {communityId, code, replacing} = sv.editing;
    const payload = {reached_on: $("sv-reached").value};
    const note = $("sv-note").value.trim();
    if (note) payload.note = note;
    if (CARRIES[code] === "votes") {
      payload.votes = {eligible_households: Number($("sv-eligible").value), participants: Number($("sv-participants").value),
        in_favour: Number($("sv-favour").value)};
    }
    if (CARRIES[code] === "management_mode") payload.management_mode = $("sv-mode").value;
    if (replacing) payload.changed_reason = $("sv-reason").value.trim();
    const submit = $("sv-form").querySelector("button[type=submit]");
    submit.disabled = true;
    $("sv-form-error").textContent = "";
    try {
      const result = await D.send("PUT", milestonePath(communityId, code), payload);
      if (!result.ok) { $("sv-form-error").textContent = refusal(result); return; }
      dialog.close();
      const name = `${communityName(communityId)}“${NAME[code]}”`;
      $("sv-status").textContent = result.body.vote_passed === false
        ? `已保存${name}：居民表决未通过（须三分之二以上的户参与、参与户过半数同意），该节点按未完成计。`
        : `已保存${name}，完成日期 ${payload.reached_on}。`;
      sv.focusAfter = {community: communityId, code};
      await fetchReport();
    } catch (err) {
      $("sv-form-error").textContent = "未能保存：网络连接失败，请稍后再试。";
    } finally {
      submit.disabled = false;
    }
  });
  $("sv-cancel").addEventListener("click", () => dialog.close());
  dialog.addEventListener("close", () => {
    if (sv.editing && !sv.focusAfter) {
      const {communityId, code} = sv.editing;
      const cell = grid.querySelector(`button[data-community="${CSS.escape(communityId)}"][data-code="${code}"]`);
      if (cell) cell.focus();
    }
  });

  // -- controls ----------------------------------------------------------------------------
  $("sv-as-of").addEventListener("change", (e) => {
    if (!e.target.value || !sv.round) return;  // a half-typed date
    sv.asOf = e.target.value;
    fetchReport();
  });
  $("sv-district").addEventListener("change", (e) => {
    sv.district = e.target.value;
    fetchReport();
  });
  document.querySelectorAll("button[data-sv-format]").forEach((b) => b.addEventListener("click", () => {
    if (!sv.report) { $("sv-message").textContent = "请先加载进度督办数据。"; return; }
    const query = {format: b.dataset.svFormat, as_of: sv.report.as_of};
    if (sv.district) query.district_id = sv.district;
    D.download("supervision", query, $("sv-message"));
  }));

  D.registerTab("supervision", {load, ...D.ACCEPTANCE_ROUNDS});  // an aftercare round has no works to follow
})();
