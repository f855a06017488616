// Survey links from the dashboard (SPEC §14, issue 16 item 5): in the community table of an open round
// an admin makes a link for a community's residents' phones and downloads its poster (PDF or PNG),
// fetched with the key like every export.
(function () {
  "use strict";
  const D = window.Dashboard;
  const {$, el} = D;
  const dialog = $("link-dialog");
  let current = null;  // {round, community, link}

  function linkPath(round, communityId) {
    return `/api/v1/rounds/${encodeURIComponent(round.round_id)}/communities/${encodeURIComponent(communityId)}` +
      "/survey-links";
  }
  function dateTime(iso) {
    const d = new Date(iso);
    if (isNaN(d)) return iso;
    const two = (n) => String(n).padStart(2, "0");
    return `${d.getFullYear()}年${d.getMonth() + 1}月${d.getDate()}日 ${two(d.getHours())}:${two(d.getMinutes())}`;
  }

  /** The service's refusal in Chinese (its messages are English); the message itself when not foreseen. */
  const REFUSALS = {
    round_closed: "本轮测评已截止（截止时间已过），新链接会立即失效，不能再生成。",
    round_published: "本轮测评结果已发布，不能再生成链接。",
    link_secret_changed: "服务的密钥已更换，这个链接的海报不能再打印，请重新生成链接。",
    link_revoked: "这个链接已作废，海报上的二维码扫码后无法提交测评，请重新生成链接。",
    link_expired: "这个链接已随本轮测评截止而失效，海报上的二维码扫码后无法提交测评。",
  };
  function refusal(status, body) {
    if (REFUSALS[body.error]) return REFUSALS[body.error];
    if (status === 401) return "访问密钥无效，请重新输入。";
    if (status === 403) return "只有管理员可以生成扫码测评链接和海报。";
    if (status === 404) return "找不到该小区或链接。";
    if (body.errors && body.errors.community_id) return "该小区不在本轮测评范围内。";
    return body.message || "HTTP " + status;
  }

  async function createLink(community, round, button) {
    const message = $("results-message");
    message.textContent = "";
    button.disabled = true;
    try {
      const r = await fetch(linkPath(round, community.community_id), {method: "POST", headers: D.headers()});
      const body = await r.json().catch(() => ({}));
      if (r.status !== 201) {
        message.textContent = `为“${community.name_zh}”生成链接失败：` + refusal(r.status, body);
        return;
      }
      current = {round, community, link: body};
      const district = D.state.names[community.district_id] || community.district_id;
      $("link-context").textContent = `${community.name_zh}（${district}）· ${round.title || round.round_id}`;
      $("link-url").value = body.url;
      $("link-expires").textContent = `测评截止（${dateTime(body.expires_at)}）时链接自动失效；管理员可随时撤销。`;
      $("link-message").textContent = "";
      dialog.showModal();
      $("link-url").select();
    } finally {
      button.disabled = false;
    }
  }

  async function downloadPoster(kind) {
    if (!current) return;
    const {round, community, link} = current;
    const r = await fetch(`${linkPath(round, community.community_id)}/${encodeURIComponent(link.link_id)}/poster.${kind}`,
      {headers: D.headers()});
    if (!r.ok) {
      const body = await r.json().catch(() => ({}));
      $("link-message").textContent = "海报下载失败：" + refusal(r.status, body);
      return;
    }
    const blob = await r.blob();
    const match = /filename\*=UTF-8''([^;]+)/.exec(r.headers.get("Content-Disposition") || "");
    const name = match ? decodeURIComponent(match[1]) : `${community.name_zh}-扫码测评海报.${kind}`;
    const a = el("a", {href: URL.createObjectURL(blob), download: name});
    document.body.append(a); a.click(); a.remove();
    $("link-message").textContent = "海报已下载。";
  }

  D.addCommunityAction({
    applies: (round, me) => !!me && me.role === "admin" && !!round && round.status === "open",
    add(cell, community, round) {
      const button = el("button", {type: "button", class: "link-button",
        "aria-label": `${community.name_zh}：生成链接`}, "生成链接");
      button.addEventListener("click", () => createLink(community, round, button));
      cell.append(button);
    },
  });

  $("link-copy").addEventListener("click", async () => {
    const input = $("link-url");
    try {
      await navigator.clipboard.writeText(input.value);
    } catch (e) {  // no clipboard API (plain http): the selected text can be copied by hand
      input.select();
      $("link-message").textContent = "请手动复制上面的链接。";
      return;
    }
    $("link-message").textContent = "链接已复制。";
  });
  $("link-poster-pdf").addEventListener("click", () => downloadPoster("pdf"));
  $("link-poster-png").addEventListener("click", () => downloadPoster("png"));
  $("link-close").addEventListener("click", () => dialog.close());
})();
