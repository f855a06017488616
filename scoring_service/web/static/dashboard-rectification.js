// 整改台账 tab (SPEC §13, §16): the failed checks of a round's acceptance inspections at a date, with the
// inspector's photos beside the check's text, points, severity, opening and due dates, the status in
// Chinese and overdue in red; filters by district, status and 仅看逾期; per-district counts; the
// districts' answers with their photos and the agency's re-inspection (复验) that verified an item.
// A district key (or an admin) answers an item from the page: photos uploaded one by one to
// POST /attachments (a file input that opens the phone's camera), then the answer with a response id
// kept until the service has answered it for good (a retry sends the same id, recorded once).
//
// Photos need the key: they are fetched with the Authorization header and shown through blob: URLs
// (the page's CSP allows img-src blob:). No external resources.
(function () {
  "use strict";
  const D = window.Dashboard;
  const {$, el} = D;
  const STATUS = {open: "待整改", submitted: "已提交", reopened: "复验未通过", verified: "已复验"};
  const SEVERITY = {critical: "严重（否决项）", major: "一般"};
  const EVENT = {opened: "发现问题", submitted: "提交整改", reopened: "复验未通过", verified: "复验通过"};
  const PAGE_ITEMS = 200;  // a national round lists thousands of items: filter, or ask for all
  const MAX_PHOTOS = 20;
  const DAY = 24 * 3600 * 1000;
  const rx = {round: null, asOf: null, district: "", status: "", overdue: false, body: null, seq: 0, showAll: false,
    agencies: {}, answering: null, busy: false, districtsFor: null};
  const enc = encodeURIComponent;

  // -- photos through the key ---------------------------------------------------------------------
  const blobs = new Map();  // url → Promise of a blob: URL (a file never changes under its hash)
  function blobUrl(url) {
    if (!blobs.has(url)) {
      const promise = fetch(url, {headers: D.headers()}).then((r) => {
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.blob();
      }).then((blob) => URL.createObjectURL(blob));
      promise.catch(() => blobs.delete(url));  // asked again next time
      blobs.set(url, promise);
    }
    return blobs.get(url);
  }
  // thumbnails load when they come into view
  const observer = "IntersectionObserver" in window ? new IntersectionObserver((entries) => {
    entries.forEach((entry) => {
      if (!entry.isIntersecting) return;
      observer.unobserve(entry.target);
      showThumbnail(entry.target);
    });
  }, {rootMargin: "200px"}) : null;
  function showThumbnail(img) {
    blobUrl(img.dataset.src).then((src) => { img.src = src; }).catch(() => {
      img.replaceWith(el("span", {class: "thumb-missing"}, "照片无法显示"));
    });
  }
  function thumbnails(links, what) {
    const box = el("span", {class: "thumbs"});
    links.forEach((link, i) => {
      const label = `${what}${links.length > 1 ? " " + (i + 1) : ""}`;
      if (!link.thumbnail_url) {  // a PDF: a button that opens it
        box.append(el("button", {type: "button", class: "thumb pdf", "data-file": link.url, "aria-label": `查看${label}（PDF）`},
          "PDF"));
        return;
      }
      const button = el("button", {type: "button", class: "thumb", "data-file": link.url, "aria-label": `查看${label}大图`});
      const img = el("img", {alt: label, "data-src": link.thumbnail_url, "data-sha256": link.sha256, width: "96",
        height: "72"});
      button.append(img);
      box.append(button);
      if (observer) observer.observe(img); else showThumbnail(img);
    });
    return box;
  }

  // -- words ----------------------------------------------------------------------------------------
  const dateZh = (iso) => (iso ? `${Number(iso.slice(0, 4))}年${Number(iso.slice(5, 7))}月${Number(iso.slice(8))}日` : "");
  const days = (later, earlier) => Math.round((Date.parse(later) - Date.parse(earlier)) / DAY);
  const points = (x) => (x === null || x === undefined ? "—" : String(Number(x)));
  const districtName = (id) => (rx.districtNames || {})[id] || id;
  const agencyName = (id) => rx.agencies[id] || id;
  const chinaToday = () => new Date(Date.now() + 8 * 3600 * 1000).toISOString().slice(0, 10);

  // -- reading the list -------------------------------------------------------------------------------
  function load(round) {
    if (!rx.round || rx.round.round_id !== round.round_id) {
      rx.asOf = null;
      rx.district = "";
      rx.showAll = false;
      rx.districtsFor = null;
    }
    rx.round = round;
    const me = D.state.me, scoped = !!me && me.role === "district";
    $("rx-district-box").hidden = scoped;
    $("rx-scope").hidden = !scoped;
    if (scoped) rx.district = "";  // the service shows a district key its own district only
    $("rx-done").textContent = "";
    loadAgencies();
    fetchList();
  }

  async function loadAgencies() {
    if (Object.keys(rx.agencies).length) return;
    try {
      rx.agencies = Object.fromEntries((await D.api("agencies")).items.map((a) => [a.agency_id, a.name]));
      if (rx.body) render();
    } catch (e) {
      rx.agencies = {};  // ids instead of names
    }
  }

  async function fetchList() {
    const seq = ++rx.seq;
    $("rx-message").textContent = "";
    const query = new URLSearchParams();
    if (rx.asOf) query.set("as_of", rx.asOf);
    if (rx.district) query.set("district_id", rx.district);
    if (rx.status) query.set("status", rx.status);
    if (rx.overdue) query.set("overdue", "true");
    let body;
    try {
      body = await D.api(`rounds/${enc(rx.round.round_id)}/rectifications` + (query.toString() ? "?" + query : ""));
    } catch (e) {
      if (seq !== rx.seq) return;
      $("rx-message").textContent = {
        401: "整改台账需要领导小组、管理员、区级或测评机构密钥，请先在上方输入访问密钥。",
        403: "该密钥无权查看整改台账（区级密钥只能看本区的整改事项）。",
        404: "找不到该测评轮次。",
        422: "查询条件不正确：" + e.message,
      }[e.status] || "加载失败：" + e.message;
      rx.body = null;
      $("rx-district-table").querySelector("tbody").replaceChildren();
      $("rx-items").replaceChildren();
      $("rx-count").textContent = "";
      $("rx-more").hidden = true;
      return;
    }
    if (seq !== rx.seq) return;  // a newer request (another date or filter) has been made
    rx.body = body;
    render();
  }

  function render() {
    const body = rx.body;
    $("rx-as-of").value = body.as_of;
    rx.districtNames = {...(rx.districtNames || {}),
      ...Object.fromEntries(body.districts.map((d) => [d.district_id, d.name_zh || d.district_id]))};
    if (!rx.district && !$("rx-district-box").hidden && rx.districtsFor !== rx.round.round_id) {
      const select = $("rx-district");  // the whole round: offer each of its districts
      select.replaceChildren(el("option", {value: ""}, "全部"),
        ...body.districts.map((d) => el("option", {value: d.district_id}, d.name_zh || d.district_id)));
      select.value = "";
      rx.districtsFor = rx.round.round_id;
    }
    if (!$("rx-scope").hidden && body.districts.length) {
      $("rx-scope").textContent = "本区：" + (body.districts[0].name_zh || body.districts[0].district_id);
    }
    $("rx-i-title").textContent = `整改事项（截至${dateZh(body.as_of)}）`;
    renderDistricts(body);
    renderItems(body);
  }

  const COUNT_COLUMNS = ["open", "submitted", "reopened", "verified", "overdue"];
  function renderDistricts(body) {
    const tbody = $("rx-district-table").querySelector("tbody");
    tbody.replaceChildren(...body.districts.map((d) => {
      const tr = el("tr", {"data-district": d.district_id, class: d.overdue ? "warned" : ""});
      tr.append(el("th", {scope: "row"}, d.name_zh || d.district_id),
        ...COUNT_COLUMNS.map((k) => el("td", {class: "num" + (k === "overdue" && d[k] ? " warn" : ""), "data-col": k},
          String(d[k]))),
        el("td", {class: "num", "data-col": "median_days_to_verification"},
          d.median_days_to_verification === null ? "—" : String(d.median_days_to_verification)));
      return tr;
    }));
    const foot = $("rx-district-table").querySelector("tfoot");
    if (body.districts.length > 1) {
      const tr = el("tr");
      tr.append(el("th", {scope: "row"}, "合计"),
        ...COUNT_COLUMNS.map((k) => el("td", {class: "num", "data-col": k},
          String(body.districts.reduce((sum, d) => sum + d[k], 0)))), el("td"));
      foot.replaceChildren(tr);
    } else {
      foot.replaceChildren();
    }
  }

  function renderItems(body) {
    const items = body.items;
    const limit = rx.showAll ? items.length : Math.min(items.length, PAGE_ITEMS);
    const list = $("rx-items");
    list.replaceChildren(...items.slice(0, limit).map(itemCard));
    if (!items.length) list.append(el("li", {class: "empty"}, "没有符合条件的整改事项。"));
    const filtered = rx.status || rx.overdue || rx.district;
    $("rx-count").textContent = `${filtered ? "符合条件的" : "共"} ${items.length} 项` +
      (limit < items.length ? `，这里先列出前 ${limit} 项。` : "。") +
      (writer() ? "本区小区的事项可以点“整改反馈”上传整改后的照片。" : "");
    $("rx-more").hidden = limit >= items.length;
    $("rx-more").textContent = `显示全部 ${items.length} 项`;
  }

  /** "admin" or "district" when the key may answer items on this page, else null. */
  function writer() {
    const me = D.state.me;
    return me && (me.role === "admin" || me.role === "district") ? me.role : null;
  }

  function itemCard(item) {
    const li = el("li", {class: `rx-item rx-${item.status}` + (item.overdue ? " overdue" : ""), "data-item": item.id,
      "data-status": item.status, "data-community": item.community_id, tabindex: "-1"});
    const head = el("div", {class: "rx-head"});
    head.append(el("span", {class: "rx-community"}, item.community_name_zh || item.community_id),
      el("span", {class: "rx-district"}, districtName(item.district_id)),
      el("span", {class: `rx-status rx-s-${item.status}`, "data-col": "status"}, STATUS[item.status] || item.status));
    if (item.overdue) {
      head.append(el("span", {class: "rx-overdue", "data-col": "overdue"},
        `逾期 ${days(rx.body.as_of, item.due_on)} 天`));
    }
    const facts = el("div", {class: "rx-facts"});
    const meta = el("p", {class: "rx-meta"});
    meta.append(el("span", {"data-col": "points"}, `得分 ${points(item.points)} / ${points(item.max_points)} 分`),
      el("span", {class: `rx-severity sev-${item.severity}`, "data-col": "severity"}, SEVERITY[item.severity] || item.severity),
      el("span", {"data-col": "opened_on"}, `发现 ${item.opened_on}`),
      el("span", {"data-col": "due_on"}, `整改期限 ${item.due_on}`),
      el("span", {"data-col": "agency"}, `测评机构：${agencyName(item.agency_id)}`));
    facts.append(el("p", {class: "rx-check", "data-col": "check"}, item.check_text_zh || item.check_code), meta);
    if (item.verifying) facts.append(verifyingLine(item.verifying));
    const history = el("p", {class: "rx-history note"},
      item.history.map((h) => `${h.on} ${EVENT[h.event] || h.event}`).join(" → "));
    facts.append(history);
    const main = el("div", {class: "rx-body"});
    const photos = el("div", {class: "rx-photos", "data-col": "evidence"});
    if (item.evidence.length) photos.append(thumbnails(item.evidence, "问题照片"));
    else photos.append(el("span", {class: "thumb-missing"}, "无问题照片"));
    main.append(photos, facts);
    li.append(head, main);
    if (item.responses.length) {
      const answers = el("ol", {class: "rx-responses", "aria-label": "整改反馈"});
      item.responses.forEach((r) => {
        const entry = el("li", {"data-response": r.response_id});
        entry.append(el("span", {class: "rx-answer"}, `${r.fixed_on} 整改反馈：${r.note}`),
          thumbnails(r.evidence, "整改后照片"));
        answers.append(entry);
      });
      li.append(answers);
    }
    if (item.status !== "verified" && D.canRecordIn(item.district_id)) {
      li.append(el("button", {type: "button", class: "primary rx-answer-button", "data-action": "answer",
        "data-item": item.id, "aria-haspopup": "dialog",
        "aria-label": `整改反馈：${item.community_name_zh || item.community_id} ${item.check_text_zh || item.check_code}`},
      "整改反馈"));
    }
    return li;
  }

  function verifyingLine(v) {
    const line = el("p", {class: "rx-verifying", "data-col": "verifying"});
    line.append(el("span", {class: "rx-verified-by"}, `复验：${agencyName(v.agency_id)}，${v.on}，第 ${v.version} 版，得分 ${points(v.points)} 分`));
    if (v.evidence.length) line.append(thumbnails(v.evidence, "复验照片"));
    return line;
  }

  // -- viewing a photo --------------------------------------------------------------------------------
  const viewer = $("rx-viewer");
  /** The whole photo in a dialog, fetched with the key. */
  async function view(url, label) {
    $("rx-viewer-error").textContent = "";
    $("rx-viewer-title").textContent = label || "照片";
    const img = $("rx-viewer-img");
    img.removeAttribute("src");
    img.alt = label || "照片";
    img.hidden = false;
    viewer.showModal();
    try {
      img.src = await blobUrl(url);
    } catch (e) {
      img.hidden = true;
      $("rx-viewer-error").textContent = "照片无法显示：" + e.message;
    }
  }
  /** A PDF in a new window, fetched with the key. */
  async function openFile(url) {
    try {
      window.open(await blobUrl(url), "_blank", "noopener");
    } catch (e) {
      $("rx-message").textContent = "文件无法打开：" + e.message;
    }
  }
  $("rx-viewer-close").addEventListener("click", () => viewer.close());

  // -- answering an item (district key of the item's district, admin) -----------------------------------
  function uuid4() {
    if (window.crypto && typeof crypto.randomUUID === "function") return crypto.randomUUID();
    const b = crypto.getRandomValues(new Uint8Array(16));  // crypto.randomUUID needs a secure context
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const hex = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  }
  // One response id per item until the service has answered it for good: a double click, a retry after a
  // lost answer or a reload sends the same id, which the service records once.
  const pendingKey = (itemId) => `scoring.rectification.answer.${rx.round.round_id}.${itemId}`;
  function pendingId(itemId) {
    let id = sessionStorage.getItem(pendingKey(itemId));
    if (!id) {
      id = uuid4();
      sessionStorage.setItem(pendingKey(itemId), id);
    }
    return id;
  }
  const forgetPending = (itemId) => sessionStorage.removeItem(pendingKey(itemId));

  const dialog = $("rx-dialog");
  function openAnswer(itemId) {
    const item = rx.body.items.find((i) => i.id === itemId);
    if (!item) return;
    rx.answering = item;
    $("rx-form-context").textContent = `${item.community_name_zh || item.community_id}（${districtName(item.district_id)}）：` +
      `${item.check_text_zh || item.check_code}。发现于 ${item.opened_on}，整改期限 ${item.due_on}。`;
    const today = chinaToday();
    $("rx-fixed-on").min = item.opened_on;
    $("rx-fixed-on").max = today;
    $("rx-fixed-on").value = today < item.opened_on ? item.opened_on : today;
    $("rx-note").value = "";
    $("rx-photos").value = "";
    $("rx-form-error").textContent = "";
    $("rx-progress").textContent = "";
    dialog.showModal();
    $("rx-fixed-on").focus();
  }

  const UPLOAD_REFUSALS = {413: "照片超过 10 MB，请压缩后再上传", 415: "只能上传 JPEG、PNG、WebP 图片（或 PDF）",
    422: "照片无法识别（文件损坏，或超过 4000 万像素）", 403: "该密钥无权上传照片", 401: "访问密钥无效或已停用",
    429: "操作太频繁，请稍后再试"};
  async function upload(file) {
    const form = new FormData();
    form.append("file", file, file.name || "photo.jpg");
    const r = await fetch("/api/v1/attachments", {method: "POST", headers: D.headers(), body: form});
    const body = await r.json().catch(() => ({}));
    if (!r.ok) {
      const error = new Error(UPLOAD_REFUSALS[r.status] || body.message || "HTTP " + r.status);
      error.upload = true;
      throw error;
    }
    return body.sha256;
  }

  const FIELD_NAMES = {fixed_on: "整改完成日期", note: "整改说明", evidence: "整改照片", response_id: "反馈编号"};
  const MESSAGES = [
    [/^must not be after today \((\d{4}-\d{2}-\d{2}), China time\)$/, (m) => `不能晚于今天（${m[1]}）`],
    [/^must not be before the item opened \((\d{4}-\d{2}-\d{2})\)$/, (m) => `不能早于发现问题的日期（${m[1]}）`],
    [/no attachment this key may read$/, () => "照片未上传成功或无权使用，请重新选择照片"],
    [/^Not a valid date\.$/, () => "日期格式不正确"],
    [/^Missing data for required field\.$/, () => "必须填写"],
    [/^Shorter than minimum length (\d+)/, () => "必须填写"],
    [/^Longer than maximum length (\d+)/, (m) => `不能超过 ${m[1]} 个字`],
  ];
  function refusal(result) {
    const body = result.body || {};
    switch (result.status) {
      case 422: return `未能提交：${D.fieldErrors(body, {names: FIELD_NAMES, messages: MESSAGES})}。`;
      case 409: return "未能提交：这条整改反馈的编号已提交过不同的内容（可能之前的提交已经成功）。台账已刷新，请核对后再提交。";
      case 404: return "未能提交：找不到该整改事项。";
      case 403: return "未能提交：该密钥无权为这个小区提交整改反馈（须为本区的区级密钥或管理员）。";
      case 401: return "未能提交：访问密钥无效或已停用，请重新输入密钥。";
      case 429: return "未能提交：操作太频繁，请稍后再试。";
      default: return "未能提交：" + (body.message || "HTTP " + result.status);
    }
  }

  $("rx-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    if (rx.busy || !rx.answering) return;
    const item = rx.answering;
    const files = Array.from($("rx-photos").files || []);
    const note = $("rx-note").value.trim();
    const fixedOn = $("rx-fixed-on").value;
    const problems = [];
    if (!fixedOn) problems.push("请填写整改完成日期");
    if (!note) problems.push("请填写整改说明");
    if (!files.length) problems.push("请至少选择一张整改后的照片");
    if (files.length > MAX_PHOTOS) problems.push(`最多 ${MAX_PHOTOS} 张照片`);
    if (problems.length) {
      $("rx-form-error").textContent = problems.join("；") + "。";
      return;
    }
    const submit = $("rx-form").querySelector("button[type=submit]");
    rx.busy = true;
    submit.disabled = true;
    $("rx-form-error").textContent = "";
    try {
      const evidence = [];
      for (const [k, file] of files.entries()) {
        $("rx-progress").textContent = `正在上传第 ${k + 1} / ${files.length} 张照片…`;
        evidence.push(await upload(file));
      }
      $("rx-progress").textContent = "正在提交整改反馈…";
      const payload = {response_id: pendingId(item.id), fixed_on: fixedOn, note, evidence};
      const result = await D.send("POST", `rounds/${enc(rx.round.round_id)}/rectifications/${enc(item.id)}/responses`,
        payload);
      $("rx-progress").textContent = "";
      if (!result.ok) {
        $("rx-form-error").textContent = refusal(result);
        if (result.status === 409) {
          forgetPending(item.id);  // answered for good: a new answer needs a new id
          fetchList();
        }
        return;
      }
      forgetPending(item.id);
      dialog.close();
      let words = `已提交${item.community_name_zh || item.community_id}“${item.check_text_zh || item.check_code}”的整改反馈` +
        `（${evidence.length} 张照片），等待测评机构复验。`;
      if (rx.body && fixedOn > rx.body.as_of) {  // the list counts an answer from its date on
        rx.asOf = fixedOn;
        words += `统计日期已改为 ${fixedOn}，以显示这条反馈。`;
      }
      $("rx-done").textContent = words;
      await fetchList();
      const card = $("rx-items").querySelector(`li[data-item="${CSS.escape(item.id)}"]`);
      if (card) card.focus();
    } catch (err) {
      $("rx-progress").textContent = "";
      $("rx-form-error").textContent = err.upload ? `未能上传照片：${err.message}。`
        : "未能提交：网络连接失败。可以直接再点“提交”重试，不会重复提交。";
    } finally {
      rx.busy = false;
      submit.disabled = false;
    }
  });
  $("rx-cancel").addEventListener("click", () => dialog.close());

  // -- controls ------------------------------------------------------------------------------------
  $("rx-items").addEventListener("click", (e) => {
    const target = e.target instanceof Element ? e.target.closest("button") : null;
    if (!target || !rx.body) return;
    if (target.dataset.action === "answer") openAnswer(target.dataset.item);
    else if (target.classList.contains("pdf")) openFile(target.dataset.file);
    else if (target.dataset.file) view(target.dataset.file, (target.querySelector("img") || {}).alt);
  });
  $("rx-as-of").addEventListener("change", (e) => {
    if (!e.target.value || !rx.round) return;  // a half-typed date
    rx.asOf = e.target.value;
    fetchList();
  });
  $("rx-district").addEventListener("change", (e) => { rx.district = e.target.value; rx.showAll = false; fetchList(); });
  $("rx-status").addEventListener("change", (e) => { rx.status = e.target.value; rx.showAll = false; fetchList(); });
  $("rx-overdue").addEventListener("change", (e) => { rx.overdue = e.target.checked; rx.showAll = false; fetchList(); });
  $("rx-more").addEventListener("click", () => {
    rx.showAll = true;
    if (rx.body) renderItems(rx.body);
  });

  D.registerTab("rectification", {load, ...D.ACCEPTANCE_ROUNDS});  // aftercare inspections open no items
})();
